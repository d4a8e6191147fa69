// nncore draw page: the drawing pad, the requests to the JSON API, and the pictures of the answer.
//
// Requests while drawing: a change waits DELAY ms (changes within that time go together), at most
// one request is in flight, and an answer is dropped when the drawing was cleared, undone or the
// mode switched since it was sent (the "epoch" changed). An answer to an earlier stage of the same
// drawing (strokes only added since) is shown: it is the latest the network has said.
'use strict';

(() => {
  const SIZES = {digit: [320, 320], symbol: [320, 320], expression: [960, 320]};
  const HINTS = {
    digit: 'Draw one digit (0–9) with the mouse, a pen or a finger.',
    symbol: 'Draw one symbol: a digit, x, y, +, −, ×, ÷, =, (, ) or /.',
    expression: 'Write an expression on one line, e.g. 1+2, 12÷4= or 2x+3=11; each symbol gets a box.',
  };
  const LINE_WIDTH = 16;
  const DELAY = 100;
  const LAYER_NOTES = {
    Conv2D: 'each channel is one 3×3 filter slid over its input',
    ConvReLUPool: 'convolution, ReLU and 2×2 max-pooling in one layer',
    BatchNorm: 'each channel shifted and scaled by statistics learned in training',
    ReLU: 'negative values set to 0',
    LeakyReLU: 'negative values scaled down',
    MaxPool2D: 'each 2×2 block keeps its largest value: half the size',
    AvgPool2D: 'each block replaced by its mean',
    Dense: 'every unit sees every input value (shown as a square)',
  };

  const $ = (id) => document.getElementById(id);
  const pad = $('pad');
  const ctx = pad.getContext('2d');
  const boxes = $('boxes');
  const state = {
    mode: 'digit',
    strokes: [],      // each stroke: a list of [x, y] in canvas pixels
    drawing: null,    // the stroke under the pointer
    version: 0,       // bumped on every change of the drawing
    epoch: 0,         // bumped when the drawing is cleared, undone or the mode switches
    timer: null,
    inFlight: null,   // AbortController of the request in flight
    info: null,
  };

  // ---------------------------------------------------------------- drawing
  function paintStroke(stroke) {
    ctx.beginPath();
    const [x0, y0] = stroke[0];
    if (stroke.length === 1) {
      ctx.arc(x0, y0, LINE_WIDTH / 2, 0, 2 * Math.PI);
      ctx.fill();
      return;
    }
    ctx.moveTo(x0, y0);
    for (let i = 1; i < stroke.length; i++) ctx.lineTo(stroke[i][0], stroke[i][1]);
    ctx.stroke();
  }

  function repaint() {
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, pad.width, pad.height);
    ctx.fillStyle = ctx.strokeStyle = '#111111';
    ctx.lineWidth = LINE_WIDTH;
    ctx.lineCap = ctx.lineJoin = 'round';
    for (const s of state.strokes) paintStroke(s);
  }

  function point(e) {
    const r = pad.getBoundingClientRect();
    return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
  }

  pad.addEventListener('pointerdown', (e) => {
    if (e.pointerType === 'mouse' && e.button !== 0) return;
    e.preventDefault();
    pad.setPointerCapture(e.pointerId);
    state.drawing = {id: e.pointerId, points: [point(e)]};
    state.strokes.push(state.drawing.points);
    paintStroke(state.drawing.points);
    changed(false);
  });

  pad.addEventListener('pointermove', (e) => {
    if (!state.drawing || e.pointerId !== state.drawing.id) return;
    e.preventDefault();
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    const pts = state.drawing.points;
    for (const ev of (events.length ? events : [e])) {
      const p = point(ev);
      const last = pts[pts.length - 1];
      ctx.beginPath();
      ctx.moveTo(last[0], last[1]);
      ctx.lineTo(p[0], p[1]);
      ctx.stroke();
      pts.push(p);
    }
    changed(false);
  });

  function endStroke(e) {
    if (!state.drawing || e.pointerId !== state.drawing.id) return;
    state.drawing = null;
    changed(false);
  }
  pad.addEventListener('pointerup', endStroke);
  pad.addEventListener('pointercancel', endStroke);
  pad.addEventListener('lostpointercapture', endStroke);

  function undo() {
    if (!state.strokes.length) return;
    state.strokes.pop();
    state.drawing = null;
    repaint();
    changed(true);
  }

  function clear() {
    state.strokes = [];
    state.drawing = null;
    repaint();
    changed(true);
  }

  $('undo').addEventListener('click', undo);
  $('clear').addEventListener('click', clear);
  document.addEventListener('keydown', (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 'z') { e.preventDefault(); undo(); }
    if (e.key === 'Escape') clear();
  });

  function setMode(mode) {
    state.mode = mode;
    document.body.dataset.mode = mode;
    for (const b of document.querySelectorAll('.modes button')) {
      b.setAttribute('aria-pressed', String(b.dataset.mode === mode));
    }
    [pad.width, pad.height] = SIZES[mode];
    [boxes.width, boxes.height] = SIZES[mode];
    $('hint').textContent = HINTS[mode];
    showWeights();
    clear();
  }
  for (const b of document.querySelectorAll('.modes button')) {
    b.addEventListener('click', () => setMode(b.dataset.mode));
  }

  // ---------------------------------------------------------------- requests
  function changed(reset) {
    state.version += 1;
    document.body.dataset.version = String(state.version);  // with data-answered: what the page shows
    if (reset) {
      state.epoch += 1;
      if (state.inFlight) state.inFlight.abort();
      resetAnswer();
    }
    if (!state.strokes.length) return;
    if (!state.timer) state.timer = setTimeout(() => { state.timer = null; send(); }, DELAY);
  }

  function endpoint() {
    return state.mode === 'expression' ? '/api/solve' : `/api/explain?mode=${state.mode}`;
  }

  async function send() {
    if (state.inFlight || !state.strokes.length) return;  // the answer's arrival sends again
    const sent = {version: state.version, epoch: state.epoch, mode: state.mode};
    const controller = new AbortController();
    state.inFlight = controller;
    setStatus('asking the network…');
    try {
      const blob = await new Promise((resolve) => pad.toBlob(resolve, 'image/png'));
      const res = await fetch(endpoint(), {
        method: 'POST', headers: {'Content-Type': 'image/png'}, body: blob, signal: controller.signal,
      });
      const data = await res.json();
      if (sent.epoch !== state.epoch || sent.mode !== state.mode) return;  // stale: drop it
      if (res.ok) {
        if (sent.mode === 'expression') showSolution(data); else showPrediction(data);
        setStatus(sent.version === state.version ? 'up to date' : 'updating…');
      } else {
        showRefusal(data, res.status);
      }
      document.body.dataset.answered = String(sent.version);
    } catch (err) {
      if (err.name !== 'AbortError') setStatus(`no answer from the server (${err.message})`, true);
    } finally {
      if (state.inFlight === controller) state.inFlight = null;
      if (state.version !== sent.version || state.epoch !== sent.epoch) changed(false);
    }
  }

  function setStatus(text, error = false) {
    $('status').textContent = text;
    $('status').classList.toggle('error', error);
  }

  // ---------------------------------------------------------------- answers
  function percent(p) { return `${(100 * p).toFixed(1)}%`; }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function paintPixels(canvas, colour) {
    const c = canvas.getContext('2d');
    const img = c.createImageData(28, 28);
    for (let y = 0; y < 28; y++) {
      for (let x = 0; x < 28; x++) {
        const [r, g, b] = colour(y, x);
        const i = 4 * (28 * y + x);
        img.data[i] = r; img.data[i + 1] = g; img.data[i + 2] = b; img.data[i + 3] = 255;
      }
    }
    c.putImageData(img, 0, 0);
  }

  function showPrediction(d) {
    $('label').textContent = d.symbol;
    $('label').dataset.label = d.label;
    $('confidence').textContent = `${percent(d.confidence)} sure`;
    const bars = $('bars');
    bars.replaceChildren(...d.top.map((t) => {
      const li = el('li');
      const track = el('span', 'track');
      const fill = el('span', 'fill');
      fill.style.width = `${(100 * t.confidence).toFixed(1)}%`;
      track.append(fill);
      li.append(el('span', 'sym', t.symbol), track, el('span', 'num', percent(t.confidence)));
      li.title = t.label;
      return li;
    }));
    const amb = $('ambiguous');
    amb.hidden = !d.ambiguous;
    if (d.ambiguous) {
      amb.textContent = `Could just as well be ${d.ambiguous_with.map((o) => `${o.symbol} (${percent(o.confidence)})`)
        .join(', ')}: these glyphs are drawn alike.`;
    }
    paintPixels($('input'), (y, x) => { const v = d.input[y][x]; return [v, v, v]; });
    if (d.saliency) {
      const s = d.saliency.values;
      $('sal-class').textContent = d.symbols[d.saliency.class];
      paintPixels($('saliency'), (y, x) => {
        // the input dimmed, tinted where the gradient is strong (the weakest 15% left untinted: noise)
        const base = 0.45 * d.input[y][x];
        const a = Math.max(0, Math.min(1, (Math.abs(s[y][x]) - 0.15) * 1.6));
        const tint = s[y][x] > 0 ? [230, 45, 40] : [50, 110, 240];
        return tint.map((t) => Math.round((1 - a) * base + a * t));
      });
    }
    if (d.layers) showLayers(d.layers);
  }

  function showLayers(layers) {
    const rows = layers.map((l) => {
      const kind = l.name.split(':')[1];
      const row = el('div', 'layer');
      const about = el('div');
      const shape = l.shape.length === 3 ? `${l.shape[0]} maps of ${l.shape[1]}×${l.shape[2]}` : `${l.shape[0]} units`;
      about.append(el('div', 'name', `${l.name.replace(':', ' · ')}`), el('div', 'what', shape),
        el('div', 'what', LAYER_NOTES[kind] || ''),
        el('div', 'scale', l.colours === 'RdBu_r' ? `blue ${l.min.toFixed(2)} … 0 … ${l.max.toFixed(2)} red`
          : `0 … ${l.max.toFixed(2)}`));
      const maps = el('div', 'maps');
      const img = el('img', 'pixels');
      img.alt = `${l.name}: ${shape}`;
      const zoom = l.shape.length === 1 ? 6 : Math.max(2, Math.round(44 / l.tile[0]));  // a dense layer: one square
      img.style.width = `${zoom * (l.columns * (l.tile[1] + 1) - 1)}px`;
      img.src = l.grid;
      maps.append(img);
      row.append(about, maps);
      return row;
    });
    $('layers').replaceChildren(...rows);
  }

  // a symbol of the reader (a class name such as "plus", or the glyph itself) as the glyph to show
  function glyph(s) {
    if (s.symbol) return s.symbol;
    const m = state.info && state.info.modes.symbol;
    const i = m ? m.classes.indexOf(s.label) : -1;
    return i >= 0 ? m.symbols[i] : s.label;
  }

  function colourOf(confidence) {
    return confidence >= 0.9 ? '#1f9d55' : confidence >= 0.6 ? '#d98e04' : '#d64545';
  }

  function answerText(d) {
    const equation = d.expression.includes('=') && !d.expression.endsWith('=');
    if (equation) {
      const variable = (d.expression.match(/[xy]/) || ['x'])[0];
      return {main: `${variable} = ${d.value}`, detail: `solving ${d.written}`};
    }
    const lhs = d.written.endsWith('=') ? d.written.slice(0, -1) : d.written;
    return {main: `${lhs} = ${d.value}`, detail: ''};
  }

  function showSolution(d) {
    const {main, detail} = answerText(d);
    $('result').textContent = main;
    $('result').dataset.value = d.value;
    const parts = [detail];
    if (d.decimal !== null && String(d.value).includes('/')) parts.push(`≈ ${Number(d.decimal).toPrecision(4)}`);
    parts.push(`confidence ${percent(d.confidence)}`);
    $('result-detail').textContent = parts.filter(Boolean).join(' · ');
    $('warnings').replaceChildren(...(d.warnings || []).map((w) => el('li', '', w)));
    const body = $('symbols').querySelector('tbody');
    body.replaceChildren(...d.symbols.map((s, i) => {
      const tr = el('tr');
      const alts = (s.top || []).slice(1).map((t) => `${glyph(t)} ${percent(t.confidence)}`).join(', ');
      tr.append(el('td', 'num', String(i + 1)), el('td', 'sym', glyph(s)),
        el('td', 'num', percent(s.confidence)), el('td', '', alts), el('td', 'num', s.box.join(', ')));
      return tr;
    }));
    $('symbols').hidden = !d.symbols.length;
    drawBoxes(d.symbols);
  }

  function drawBoxes(symbols) {
    const c = boxes.getContext('2d');
    c.clearRect(0, 0, boxes.width, boxes.height);
    c.lineWidth = 2;
    c.font = '600 16px system-ui, sans-serif';
    c.textBaseline = 'bottom';
    for (const s of symbols) {
      const [x0, y0, x1, y1] = s.box;
      const colour = colourOf(s.confidence);
      c.strokeStyle = c.fillStyle = colour;
      c.strokeRect(x0 - 3, y0 - 3, x1 - x0 + 6, y1 - y0 + 6);
      const text = `${glyph(s)} ${Math.round(100 * s.confidence)}%`;
      const w = c.measureText(text).width + 8;
      const ty = Math.max(24, y0 - 4);
      c.globalAlpha = 0.9;
      c.fillRect(x0 - 3, ty - 19, w, 19);
      c.globalAlpha = 1;
      c.fillStyle = '#ffffff';
      c.fillText(text, x0 + 1, ty - 2);
    }
  }

  function showRefusal(d, status) {
    const message = d.error || `HTTP ${status}`;
    if (state.mode === 'expression') {
      $('result').textContent = '…';
      delete $('result').dataset.value;
      $('result-detail').textContent = `cannot solve this yet: ${message}`;
      $('symbols').hidden = true;
      boxes.getContext('2d').clearRect(0, 0, boxes.width, boxes.height);
      setStatus(status === 422 ? 'keep writing' : message, status !== 422);
    } else {
      setStatus(message, status !== 422);
    }
  }

  function resetAnswer() {
    $('label').textContent = '?';
    delete $('label').dataset.label;
    $('confidence').textContent = '';
    $('bars').replaceChildren();
    $('ambiguous').hidden = true;
    for (const id of ['input', 'saliency']) {
      const c = $(id).getContext('2d');
      c.fillStyle = '#000';
      c.fillRect(0, 0, 28, 28);
    }
    $('sal-class').textContent = '?';
    $('layers').replaceChildren(el('p', 'muted', 'Draw something to see the layers.'));
    $('result').textContent = '?';
    delete $('result').dataset.value;
    $('result-detail').textContent = '';
    $('warnings').replaceChildren();
    $('symbols').hidden = true;
    boxes.getContext('2d').clearRect(0, 0, boxes.width, boxes.height);
    setStatus(state.strokes.length ? '' : 'waiting for your drawing');
  }

  function showWeights() {
    const m = state.info && state.info.modes[state.mode];
    let text = m ? m.weights : '…';
    if (state.mode === 'expression' && state.info && !state.info.expression_reader) {
      text += ' (this nncore cannot read expressions yet)';
    }
    $('weights').textContent = text;
  }

  fetch('/api/info').then((r) => r.json()).then((info) => { state.info = info; showWeights(); })
    .catch(() => setStatus('the server does not answer', true));
  repaint();
  resetAnswer();
  document.body.dataset.ready = 'true';
})();
