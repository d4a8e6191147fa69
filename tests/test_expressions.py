"""Reading whole expressions: the exact evaluator, the grammar decoder, segmentation, end to end."""

import json
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image, ImageDraw

import nncore
from nncore.errors import (
    BracketError,
    LayoutError,
    NoInkError,
    NotSolvableError,
    SyntaxExpressionError,
    ZeroDivisionExpression,
)
from nncore.expressions import evaluate, format_value
from nncore.expressions.decode import JOIN_PRIOR, decode
from nncore.expressions.segment import segment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


# -- the evaluator against a Fraction reference ------------------------------------------------------------

def _tree(rng, depth):
    """(text, value, precedence) of a random expression tree; value None when it divides by zero.

    precedence: 0 for a number or a bracketed expression, 1 for a product or quotient, 2 for a sum.
    """
    if depth == 0 or rng.random() < 0.3:
        n = int(rng.integers(0, 100)) if rng.random() < 0.3 else int(rng.integers(0, 10))
        return str(n), Fraction(n), 0
    (lt, lv, lp), (rt, rv, rp) = _tree(rng, depth - 1), _tree(rng, depth - 1)
    op = "+-*/"[int(rng.integers(4))]
    if op in "*/" and lp == 2:
        lt = f"({lt})"
    if (op in "*-" and rp == 2) or (op == "/" and rp >= 1):
        rt = f"({rt})"
    if lv is None or rv is None:
        value = None
    elif op == "+":
        value = lv + rv
    elif op == "-":
        value = lv - rv
    elif op == "*":
        value = lv * rv
    else:
        value = None if rv == 0 else lv / rv
    prec = 2 if op in "+-" else 1
    if op == "*" and rt.startswith("(") and rt.endswith(")") and rp == 2 and rng.random() < 0.5:
        return lt + rt, value, prec                          # implicit multiplication: 2(3+4)
    return lt + op + rt, value, prec


def test_evaluator_agrees_with_a_fraction_reference_on_10000_random_expressions():
    rng = np.random.default_rng(2026)
    checked = zero = 0
    for _ in range(10_000):
        text, value, _ = _tree(rng, int(rng.integers(1, 5)))
        if rng.random() < 0.2:
            text, value = f"-({text})", None if value is None else -value
        if rng.random() < 0.5:
            text += "="
        if value is None:
            with pytest.raises(ZeroDivisionExpression):
                evaluate(text)
            zero += 1
        else:
            assert evaluate(text).value == value, text
            checked += 1
    assert checked > 8000 and zero > 50


@pytest.mark.parametrize("seed", range(5))
def test_linear_equations_are_solved_exactly(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        a, b, c = (int(v) for v in rng.integers(1, 30, 3))
        assert evaluate(f"{a}x+{b}={c}").value == Fraction(c - b, a)
        assert evaluate(f"{c}={a}(y-{b})").value == Fraction(c, a) + b
        assert evaluate(f"x/{a}-{b}={c}").variable == "x"


@pytest.mark.parametrize("text, error, words", [
    ("3+*2", SyntaxExpressionError, "two operators in a row"),
    ("3+-2", SyntaxExpressionError, "two operators in a row"),
    ("(3+2", BracketError, "not closed"),
    ("3+2)", BracketError, "no opening bracket"),
    ("4/(2-2)=", ZeroDivisionExpression, "division by zero"),
    ("x*x=4", NotSolvableError, "non-linear"),
    ("x+1", NotSolvableError, "no equation"),
    ("x+y=2", NotSolvableError, "one variable"),
    ("2=2", NotSolvableError, "always true"),
    ("1=2=3", SyntaxExpressionError, "second '='"),
    ("3+", SyntaxExpressionError, "ends with an operator"),
    ("3a", SyntaxExpressionError, "unexpected character"),
])
def test_malformed_expressions_give_one_line_errors(text, error, words):
    with pytest.raises(error, match=words) as exc:
        evaluate(text)
    assert "\n" not in str(exc.value)


def test_values_are_printed_exactly():
    assert format_value(evaluate("3+(5*(2-7))=").value) == "-22"
    assert format_value(evaluate("(9-8)/(7+5)").value) == "1/12"
    assert format_value(evaluate("2x+3=11").value) == "4"


# -- the grammar decoder ------------------------------------------------------------------------------------

def _tops(*symbols):
    return [list(s) for s in symbols]


def test_decoder_prefers_a_well_formed_reading_over_a_more_probable_label():
    # the third symbol looks more like '(' than '1', but '(' would leave a bracket open
    r = decode(_tops([("7", 1.0)], [("plus", 1.0)], [("lparen", 0.6), ("1", 0.4)]))
    assert [x.text for x in r] == ["7+1"]


def test_x_and_times_are_decided_by_context():
    between = decode(_tops([("3", 1.0)], [("x", 0.7), ("times", 0.3)], [("4", 1.0)], [("eq", 1.0)]))
    assert between[0].text == "3*4=" and between[0].confidence == pytest.approx(1.0)
    coefficient = decode(_tops([("2", 1.0)], [("times", 0.6), ("x", 0.4)], [("plus", 1.0)], [("3", 1.0)],
                               [("eq", 1.0)], [("7", 1.0)]))
    assert coefficient[0].text == "2x+3=7"


def test_decoder_grammar_rules():
    # no leading zero in a number: 0/8 rather than 018
    assert decode(_tops([("0", 1.0)], [("1", 0.6), ("slash", 0.4)], [("8", 1.0)]))[0].text == "0/8"
    # a unary minus first, never after another operator
    assert decode(_tops([("minus", 1.0)], [("3", 1.0)]))[0].text == "-3"
    assert decode(_tops([("3", 1.0)], [("plus", 1.0)], [("minus", 1.0)], [("2", 1.0)])) == []
    # at most one '='; an unclosed bracket is not a reading
    assert decode(_tops([("1", 1.0)], [("eq", 1.0)], [("1", 1.0)], [("eq", 1.0)])) == []
    assert decode(_tops([("lparen", 1.0)], [("1", 1.0)])) == []


def test_decoder_reads_two_pieces_as_one_symbol_when_that_is_more_probable():
    """An x drawn as two arcs, ')' and '(': apart, ')(' leaves no bracket to close; read as one, it is x."""
    tops = _tops([("2", 1.0)], [("rparen", 0.99)], [("lparen", 0.93)], [("plus", 1.0)], [("3", 1.0)],
                 [("eq", 1.0)], [("7", 1.0)])
    best = decode(tops, {1: [("x", 0.9), ("times", 0.05)]})[0]
    assert best.text == "2x+3=7" and best.spans[1] == (1, 3) and len(best.spans) == 6
    assert best.confidence == pytest.approx(0.95 * JOIN_PRIOR)
    # two confident digits stay two digits unless their union is far more probable than both together
    assert decode(_tops([("1", 0.99)], [("1", 0.98)]), {0: [("1", 0.99)]})[0].spans == ((0, 1), (1, 2))
    # a 5 whose bar came loose: the body alone is a poor 5, the bar a good minus; together a sure 5
    assert decode(_tops([("5", 0.3)], [("minus", 0.9)], [("3", 1.0)]), {0: [("5", 0.99)]})[0].text == "53"
    # a union the grammar cannot place is not taken however probable: '(' for '1+' leaves '(2' open
    assert decode(_tops([("1", 0.6)], [("plus", 0.9)], [("2", 1.0)]), {0: [("lparen", 0.99)]})[0].text == "1+2"


# -- segmentation -------------------------------------------------------------------------------------------

W = 10


def _strokes():
    """A few symbols as pen strokes (x, y offsets in a 70 x 130 cell): enough to write test expressions."""
    return {
        "1": [[(20, 20), (35, 0), (35, 130)]],
        "2": [[(0, 30), (20, 5), (50, 5), (65, 35), (55, 70), (0, 130), (70, 130)]],
        "3": [[(0, 10), (60, 10), (30, 60), (65, 90), (55, 125), (0, 125)]],
        "4": [[(50, 0), (0, 90), (70, 90)], [(50, 0), (50, 130)]],
        "7": [[(0, 5), (70, 5), (25, 130)]],
        "+": [[(0, 65), (70, 65)], [(35, 30), (35, 100)]],
        "-": [[(0, 65), (70, 65)]],
        "=": [[(0, 45), (70, 45)], [(0, 85), (70, 85)]],
        "x": [[(5, 50), (65, 125)], [(65, 50), (5, 125)]],
        "(": [[(50, 0), (20, 35), (12, 65), (20, 95), (50, 130)]],
        ")": [[(10, 0), (40, 35), (48, 65), (40, 95), (10, 130)]],
        # written in pieces that do not touch: x as two arcs back to back, '=' with bars that do not line up
        "c": [[(0, 55), (22, 70), (28, 90), (22, 110), (0, 125)], [(70, 55), (48, 70), (42, 90), (48, 110),
                                                                  (70, 125)]],
        "~": [[(0, 45), (45, 45)], [(30, 85), (75, 85)]],
    }


def written(text, ruled=False, size=(None, 260), ink=0, paper=255, second_line=None):
    """A drawing of ``text`` in pen strokes (grey L image), optionally on ruled paper."""
    strokes = _strokes()
    width = size[0] or 60 + 110 * len(text)
    height = size[1] if second_line is None else 2 * size[1]
    img = Image.new("L", (width, height), paper)
    d = ImageDraw.Draw(img)
    if ruled:
        for y in range(25, height, 60):
            d.line([(0, y), (width, y)], fill=(paper + ink) // 2 + 60, width=2)
    for row, line in enumerate([text] + ([second_line] if second_line else [])):
        for i, ch in enumerate(line):
            x0, y0 = 50 + 110 * i, 65 + row * size[1]
            for s in strokes[ch]:
                d.line([(x0 + x, y0 + y) for x, y in s], fill=ink, width=W, joint="curve")
    return img


def test_segmentation_finds_each_symbol_and_groups_equals_signs():
    seg = segment(written("12+7="))
    assert len(seg.symbols) == 5
    assert len(seg.symbols[-1].parts) == 2                # the two bars of '='
    xs = [s.box[0] for s in seg.symbols]
    assert xs == sorted(xs)
    assert seg.stroke == pytest.approx(W, rel=0.35)


def test_ruled_lines_are_removed_but_minus_signs_stay():
    plain = segment(written("7-2="))
    ruled = segment(written("7-2=", ruled=True))
    assert len(ruled.symbols) == len(plain.symbols) == 4
    for a, b in zip(plain.symbols, ruled.symbols):
        assert np.allclose(a.box, b.box, atol=3)


def test_two_dots_one_above_the_other_are_one_symbol():
    """A ÷ whose bar is missing (or too faint to find): its two dots, farther apart than a ÷'s, group."""
    img = written("7-4")
    d = ImageDraw.Draw(img)
    d.rectangle([160, 60, 230, 200], fill=255)                # wipe the minus sign ...
    for y in (75, 180):                                       # ... and put two dots a symbol's height apart
        d.ellipse([188, y - 8, 204, y + 8], fill=0)
    seg = segment(img)
    assert len(seg.symbols) == 3
    assert len(seg.symbols[1].parts) == 2


def test_a_ruled_line_remnant_is_not_a_minus_sign():
    """A short piece of a printed line, thinner than the pen, beside the writing: not a symbol.

    Too short to count as a ruled line (it crosses a fifth of the picture), it would otherwise be
    read as a leading minus sign.
    """
    img = written("7+2")
    width = img.size[0]
    ImageDraw.Draw(img).line([(2, 130), (2 + width // 5 - 40, 130)], fill=60, width=2)
    plain, stray = segment(written("7+2")), segment(img)
    assert len(stray.symbols) == len(plain.symbols) == 3
    for a, b in zip(plain.symbols, stray.symbols):
        assert np.allclose(a.box, b.box, atol=3)


def test_light_on_dark_writing_is_segmented_the_same():
    dark = segment(written("4+1", ink=240, paper=20))
    assert len(dark.symbols) == 3


def test_blank_pictures_and_two_lines_are_refused():
    with pytest.raises(NoInkError, match="no writing"):
        segment(Image.new("L", (600, 200), 250))
    with pytest.raises(LayoutError, match="more than one line"):
        segment(written("12+7", second_line="4+31"))


def test_boxes_are_in_the_original_pictures_pixels():
    img = written("12+7=")
    big = img.resize((img.width * 3, img.height * 3))
    small_boxes = [segment(img).original_box(s) for s in segment(img).symbols]
    seg = segment(big)
    big_boxes = [seg.original_box(s) for s in seg.symbols]
    assert np.allclose(np.array(big_boxes), 3 * np.array(small_boxes), atol=8)


# -- end to end ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def symbols_model():
    return nncore.load_model(os.path.join(ROOT, "weights", "symbols_cnn.npz"))


@pytest.mark.parametrize("text, value, variable", [
    ("12+7=", "19", None), ("(12-4)x4=", None, None), ("2x+3=11", "4", "x"), ("3x=12", "4", "x"),
    ("(7-1)x(2+1)=", "18", None), ("41-2-7", "32", None),
])
def test_drawn_expressions_are_read_and_solved(symbols_model, text, value, variable):
    img = written(text)
    if value is None:                                     # x here is ×: 8 × 4 =
        r = nncore.read_expression(img, symbols_model)
        assert r.expression == "(12-4)*4=" and r.value == "32" and "×" in r.written, r.to_dict()
        return
    r = nncore.read_expression(img, symbols_model)
    assert r.value == value and r.variable == variable, r.to_dict()
    assert len(r.symbols) == len(text) and all(len(s.box) == 4 for s in r.symbols)
    assert 0 < r.confidence <= 1


def test_symbols_written_in_pieces_are_read_whole(symbols_model):
    """An x of two arcs that do not touch, and an '=' whose bars do not line up: each two parts apart,
    one symbol in the reading (the decoder weighs the union against the parts)."""
    seg = segment(written("2c+3~11"))
    assert len(seg.symbols) == 9                        # the arcs and the bars are separate symbols here
    r = nncore.read_expression(written("2c+3~11"), symbols_model)
    assert (r.expression, r.value, r.variable) == ("2x+3=11", "4", "x"), r.to_dict()
    assert len(r.symbols) == 7 and r.symbols[1].box[2] - r.symbols[1].box[0] > 60   # both arcs in one box


def test_the_reviewed_mislabeled_images_are_in_the_held_out_split(symbols_dir):
    """Every entry of symbols_mislabeled.csv names a test-split image with that label (a changed split or
    preprocessing would leave the list pointing at nothing), and the composer's pool leaves them out."""
    from expressions_compose import mislabeled, pixels_sha1, symbol_pool

    from nncore.data import load_symbols
    d = load_symbols(None, log=None)
    found = {pixels_sha1(img): d["class_names"][y] for img, y in zip(d["x_test"], d["y_test"])}
    bad = mislabeled()
    assert len(bad) >= 10 and all(found.get(h) == label for h, (label, _) in bad.items())
    reviewed, every = symbol_pool(), symbol_pool(reviewed=False)
    assert sum(map(len, every.values())) - sum(map(len, reviewed.values())) == len(bad)
    assert not {pixels_sha1(img) for imgs in reviewed.values() for img in imgs} & set(bad)


def test_symbols_review_counts_the_reviewed_labels_apart(symbols_dir):
    """tests/symbols_review.py (the README's figures on the reviewed labels): the reviewed split is the
    test split less the listed images; merging x and × never lowers an accuracy."""
    from expressions_compose import mislabeled
    from symbols_review import review
    out = review(os.path.join(os.path.dirname(__file__), "..", "weights", "symbols_cnn.npz"))
    (n_all, strict_all, merged_all), (n_kept, strict_kept, merged_kept) = out["all"], out["reviewed"]
    assert n_all - n_kept == len(mislabeled())
    assert merged_all >= strict_all and merged_kept >= strict_kept
    assert merged_all >= 0.97


def test_symbols_review_finds_each_test_images_file_and_draws_the_bracket_figure(symbols_dir, tmp_path):
    """symbols_review.held_out_files gives the stored file of each test image (its preprocessing is that image),
    and --figure draws the 1 / bracket confusions of the shipped model (the README's
    docs/symbols_1_or_bracket.png)."""
    from symbols_review import bracket_figure, held_out_files

    from nncore import preprocess_image
    d, files = held_out_files()
    assert len(files) == len(d["y_test"])
    for i in np.random.default_rng(0).choice(len(files), 12, replace=False):
        assert os.path.basename(os.path.dirname(files[i])) == d["class_names"][d["y_test"][i]]
        np.testing.assert_array_equal(preprocess_image(files[i]), d["x_test"][i])
    out = tmp_path / "brackets.png"
    n = bracket_figure(os.path.join(os.path.dirname(__file__), "..", "weights", "symbols_cnn.npz"), out)
    assert n >= 1 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_composed_expressions_from_held_out_symbols(symbols_dir, symbols_model):
    """Floors below what these small samples measure (clean 37 of 40, photo-like 27 of 30, 47 of 48 confident
    right; the README's report: clean 95.5-96.5%, photo-like 97-98% on 200 each)."""
    from expressions_compose import cases, score, symbol_pool
    pool = symbol_pool()
    clean = score(symbols_model, cases(pool, 40, photo=False, seed=11))
    photo = score(symbols_model, cases(pool, 30, photo=True, seed=12))
    assert np.mean([r for r, _, _ in clean]) >= 0.9
    assert np.mean([r for r, _, _ in photo]) >= 0.85
    confident = [r for r, c, _ in clean + photo if c]
    assert len(confident) >= 20 and np.mean(confident) >= 0.95


def test_a_model_that_is_not_a_symbols_model_is_a_usage_error(tmp_path):
    """Digits only (the MNIST weights) or foreign classes: exit code 2 with the fix, before any reading."""
    from types import SimpleNamespace

    from nncore.errors import UsageError
    mnist_weights = os.path.join(ROOT, "weights", "mnist_cnn.npz")
    with pytest.raises(UsageError, match="no operator.*symbols_cnn"):
        nncore.read_expression(written("1+2"), nncore.load_model(mnist_weights))
    with pytest.raises(UsageError, match=r"\['cat', 'dog'\] are not expression symbols"):
        nncore.read_expression(written("1+2"), SimpleNamespace(class_names=["cat", "dog"]))
    picture = tmp_path / "sum.png"
    written("1+2").save(picture)
    run = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "solve.py"), str(picture),
                          "--weights", mnist_weights], capture_output=True, text=True)
    assert run.returncode == 2, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "symbols_cnn" in run.stderr


def test_solve_script_json_and_errors(tmp_path):
    good, blank = tmp_path / "good.png", tmp_path / "blank.png"
    written("2x+3=11").save(good)
    Image.new("L", (500, 200), 255).save(blank)
    env = {**os.environ, "PYTHONPATH": ROOT, "MPLBACKEND": "Agg"}
    script = os.path.join(ROOT, "experiments", "solve.py")
    out = subprocess.run([sys.executable, script, str(good), "--json", "--annotate", str(tmp_path / "ann")],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    assert {"file", "expression", "written", "value", "decimal", "confidence", "symbols", "warnings"} <= set(row)
    assert row["value"] == "4" and row["variable"] == "x"
    assert {"label", "box", "confidence", "top"} <= set(row["symbols"][0])
    assert (tmp_path / "ann" / "good.png").stat().st_size > 1000
    bad = subprocess.run([sys.executable, script, str(blank)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert bad.returncode == 9 and bad.stderr.count("\n") == 1 and "no writing" in bad.stderr
    both = subprocess.run([sys.executable, script, str(good), str(blank)], capture_output=True, text=True,
                          env=env, cwd=ROOT)
    assert both.returncode == 8 and "x = 4" in both.stdout
