"""The draw page in a real browser: headless Chromium (the system one) driven by Selenium.

``experiments/draw.py --port 0`` serves the page; the test draws with pointer events (Selenium's
pointer actions: press, move, release, as a mouse does) and reads what the page shows. Screenshots
go to ``runs/draw/``. Without /usr/bin/chromium and /usr/bin/chromedriver the test is skipped,
except under ``CI``, where it fails (``.ci/run`` installs them with apt-get).
"""

import os
import re
import subprocess
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import strokes  # noqa: E402
from conftest import unavailable  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = os.path.join(ROOT, "runs", "draw")
# Chromium's background services would try the network, which a closed machine refuses
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1320,1500", "--hide-scrollbars"]


def _need_browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (os.path.isfile(p) and os.access(p, os.X_OK))]
    if missing:
        unavailable(f"{' and '.join(missing)} not found; "
                    "install them with: apt-get install -y chromium chromium-driver")


@pytest.fixture(scope="module")
def page_url():
    """The URL of experiments/draw.py, started on a free port (stopped after the module)."""
    _need_browser()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "experiments", "draw.py"), "--port", "0"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, found = [], {}

    def read():
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            if m and "url" not in found:
                found["url"] = m.group(1)
        found.setdefault("url", None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for _ in range(1200):
            if "url" in found or proc.poll() is not None:
                break
            threading.Event().wait(0.1)
        if not found.get("url"):
            pytest.fail("experiments/draw.py did not print its URL:\n" + "".join(lines))
        yield found["url"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser(page_url, tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        driver.get(page_url)
        _wait(driver, "document.body.dataset.ready === 'true'")
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition, timeout=30):
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(f"return {condition}"))


def draw(driver, text):
    """Write ``text`` on the pad as a person would: press, move in small steps, release, per stroke."""
    from selenium.webdriver.common.action_chains import ActionChains

    pad = driver.find_element("id", "pad")
    width, height = driver.execute_script("return [arguments[0].width, arguments[0].height]", pad)
    rect = pad.rect
    sx, sy = rect["width"] / width, rect["height"] / height

    def offset(x, y):  # canvas pixels -> offset from the element's centre in CSS pixels
        return round(x * sx - rect["width"] / 2), round(y * sy - rect["height"] / 2)

    for stroke in strokes.layout(text, (width, height)):
        actions = ActionChains(driver, duration=5)
        actions.move_to_element_with_offset(pad, *offset(*stroke[0])).click_and_hold()
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
            steps = max(1, int(max(abs(x1 - x0), abs(y1 - y0)) // 12))
            for i in range(1, steps + 1):
                actions.move_to_element_with_offset(pad, *offset(x0 + (x1 - x0) * i / steps,
                                                                 y0 + (y1 - y0) * i / steps))
        actions.release().perform()


def settled(driver):
    """Wait until the page shows the answer to the drawing as it is now."""
    _wait(driver, "document.body.dataset.answered === document.body.dataset.version")


def shot(driver, name):
    """Save the whole page (the window grown to the page's height for the shot) as runs/draw/<name>."""
    os.makedirs(SHOTS, exist_ok=True)
    path = os.path.join(SHOTS, name)
    size = driver.get_window_size()
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(size["width"], max(size["height"], height + 140))
    try:
        driver.save_screenshot(path)
    finally:
        driver.set_window_size(size["width"], size["height"])
    assert os.path.getsize(path) > 10_000
    return path


def severe_log(driver, expected=()):
    """The browser's SEVERE console messages, less those containing one of ``expected``."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not any(x in e["message"] for x in expected)]


#: the reader refuses a line that is still being written (``1+``: it ends with an operator) with 422,
#: which the page answers with "keep writing"; Chromium logs every 4xx answer as a failed load
PARTIAL_LINE = "/api/solve - Failed to load resource: the server responded with a status of 422"


def test_a_drawn_1_and_7_are_read_and_explained(browser):
    text = browser.find_element("id", "label")
    browser.find_element("css selector", ".modes button[data-mode='digit']").click()
    draw(browser, "1")
    settled(browser)
    assert text.text == "1"
    shot(browser, "digit_1.png")

    browser.find_element("id", "clear").click()
    assert text.text == "?"
    draw(browser, "7")
    settled(browser)
    assert text.text == "7"
    assert browser.find_element("id", "sal-class").text == "7"
    bars = browser.find_elements("css selector", "#bars li")
    assert len(bars) == 3 and bars[0].text.startswith("7")
    fill, track = browser.execute_script(
        "const li = document.querySelector('#bars li');"
        "return [li.querySelector('.fill').getBoundingClientRect().width,"
        "        li.querySelector('.track').getBoundingClientRect().width];")
    assert fill > 0.9 * track > 50  # the bar of a sure answer is (almost) full
    layers = browser.find_elements("css selector", "#layers .layer img")
    assert len(layers) == 11  # conv stage: 8 layers of maps; dense stage: Dense, BatchNorm, ReLU
    assert all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
               for img in layers)
    # the 28x28 input shows the drawing: some pixel is lit
    lit = browser.execute_script(
        "const d = document.getElementById('input').getContext('2d').getImageData(0, 0, 28, 28).data;"
        "let n = 0; for (let i = 0; i < d.length; i += 4) n += d[i] > 128; return n;")
    assert lit > 20
    shot(browser, "digit_7.png")
    assert severe_log(browser) == []


def test_undo_takes_back_the_last_stroke(browser):
    browser.find_element("css selector", ".modes button[data-mode='digit']").click()  # also clears
    draw(browser, "1")
    settled(browser)
    draw(browser, "-")  # a bar across the 1
    settled(browser)
    browser.find_element("id", "undo").click()
    settled(browser)
    assert browser.find_element("id", "label").text == "1"


def test_symbol_mode_reads_a_plus(browser):
    browser.find_element("css selector", ".modes button[data-mode='symbol']").click()
    draw(browser, "+")
    settled(browser)
    assert browser.find_element("id", "label").text == "+"
    assert browser.find_element("id", "weights").text == "symbols_cnn.npz"


def test_a_drawn_expression_is_solved(browser):
    browser.find_element("css selector", ".modes button[data-mode='expression']").click()
    draw(browser, "1+2")
    settled(browser)
    result = browser.find_element("id", "result")
    assert result.get_attribute("data-value") == "3"
    assert result.text == "1+2 = 3"
    assert len(browser.find_elements("css selector", "#symbols tbody tr")) == 3
    shot(browser, "expression_1+2.png")
    assert "error" not in browser.find_element("id", "status").get_attribute("class")
    assert severe_log(browser, expected=(PARTIAL_LINE,)) == []

