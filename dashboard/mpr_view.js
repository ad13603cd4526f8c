// Hounsfield's three linked views, windowed and drawn in the browser.
//
// Python sends planes of values (int16 or float32) with a JSON header: byte-shuffled with the
// high bytes zlib-compressed when prefetched, as they are when the browser is waiting for them. This
// module keeps them in a cache that outlives remounts, windows them with DICOM's LINEAR function (the same arithmetic as core.windowing.window, so the pixels are identical)
// and paints canvases. A slice step or a window change paints at once from the cache; the
// state goes back to Python (setStateValue 'view') with the planes still wanted, and Python
// answers with those planes. Python-side changes (presets, clicks on the large view, the
// histogram page) arrive with a new `rev` (crosshair, window) and are adopted.

const CACHE = new Map(); // `${axis}|${index}|${render}` -> {rows, cols, values}
let cacheVolume = null;
const CACHE_PER_AXIS = 96;
const AHEAD = 12; // planes prefetched in the direction of scrolling
const COLORS = ["#e63c3c", "#46c85a", "#f0d232"]; // the plane fixing axis 0, 1, 2 (as 3D Slicer)
const SVG = "http://www.w3.org/2000/svg";

function rint(y) {
  // numpy.rint: round half to even.
  const r = Math.round(y);
  return r - y === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function windowValue(x, c, w, invert) {
  // PS3.3 C.11.2.1.2.1, in the order core.windowing._linear computes it.
  const lo = c - 0.5 - (w - 1) / 2;
  const hi = c - 0.5 + (w - 1) / 2;
  let y;
  if (w === 1) y = x > hi ? 255 : 0;
  else if (x <= lo) y = 0;
  else if (x > hi) y = 255;
  else y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255;
  y = rint(Math.min(255, Math.max(0, y)));
  return invert ? 255 - y : y;
}

let lutKey = null;
let lut = null;
function int16Lut(c, w, invert) {
  const key = `${c}|${w}|${invert}`;
  if (key !== lutKey) {
    lut = new Uint8Array(65536);
    for (let v = 0; v < 65536; v++) lut[v] = windowValue(v - 32768, c, w, invert);
    lutKey = key;
  }
  return lut;
}

async function inflate(bytes, dtype, rows, cols, raw) {
  const k = dtype === "i2" ? 2 : 4;
  const n = rows * cols;
  if (raw === bytes.length) {
    const copy = bytes.slice(); // aligned, and free of the message it came in
    return k === 2 ? new Int16Array(copy.buffer) : new Float32Array(copy.buffer);
  }
  // Byte planes, least significant first: the low half as it is, the high half compressed.
  const stream = new Blob([bytes.subarray(raw)]).stream().pipeThrough(new DecompressionStream("deflate"));
  const high = new Uint8Array(await new Response(stream).arrayBuffer());
  const out = new Uint8Array(n * k);
  for (let b = 0; b < k; b++) {
    const src = b * n < raw ? bytes.subarray(b * n, (b + 1) * n) : high.subarray(b * n - raw, (b + 1) * n - raw);
    for (let i = 0; i < n; i++) out[i * k + b] = src[i];
  }
  return k === 2 ? new Int16Array(out.buffer) : new Float32Array(out.buffer);
}

function cacheKey(axis, index, render) {
  return `${axis}|${index}|${render}`;
}

function remember(key, entry, axis) {
  CACHE.delete(key);
  CACHE.set(key, entry);
  const mine = [...CACHE.keys()].filter((k) => k.startsWith(`${axis}|`));
  for (let i = 0; i < mine.length - CACHE_PER_AXIS; i++) CACHE.delete(mine[i]);
}

function el(tag, cls, parent) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (parent) parent.appendChild(e);
  return e;
}

function fmt(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

class Viewer {
  constructor(root) {
    this.root = root;
    this.rev = [null, null];
    this.edits = [0, 0]; // user changes of the crosshair and of the window: the page adopts only these
    this.seq = 0;
    this.epoch = Math.random().toString(36).slice(2);
    this.layoutKey = null;
    this.moved = { axis: 0, dir: 1 };
    this.sendTimer = null;
    this.lastSent = 0;
    this.lastWant = "";
    this.painted = 0;
  }

  receive(bytes, setStateValue) {
    this.setStateValue = setStateValue;
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const hlen = dv.getUint32(0, true);
    const h = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + hlen)));
    const base = 4 + hlen;
    if (h.vol !== cacheVolume) {
      CACHE.clear();
      cacheVolume = h.vol;
    }
    if (h.vol !== this.volume) {
      this.volume = h.vol;
      this.rev = [null, null]; // a new series: take its settings whatever the revision numbers
    }
    this.h = h;
    const layoutKey = JSON.stringify([h.vol, h.views, h.range, h.unit]);
    if (layoutKey !== this.layoutKey) {
      this.build(h);
      this.layoutKey = layoutKey;
    }
    if (h.rev[0] !== this.rev[0]) this.point = h.point.slice(); // set on the page: the crosshair
    if (h.rev[1] !== this.rev[1]) [this.center, this.width] = [h.center, h.width]; // or the window
    this.rev = h.rev.slice();
    this.palette = new Uint32Array(256);
    for (let v = 0; v < 256; v++) {
      const [r, g, b] = h.cmap.slice(v * 3, v * 3 + 3);
      this.palette[v] = (255 << 24) | (b << 16) | (g << 8) | r; // RGBA bytes, little endian
    }
    this.syncControls();
    this.paintAll();
    // Planes are decoded one after the other, the crosshair's first, each painted when ready;
    // then the planes still missing are asked for.
    const order = h.slices.slice().sort((a, b) => (this.point[b.axis] === b.index) - (this.point[a.axis] === a.index));
    let chain = Promise.resolve();
    for (const s of order) {
      chain = chain.then(() => inflate(bytes.subarray(base + s.offset, base + s.offset + s.length), s.dtype, s.rows, s.cols, s.raw))
        .then((values) => {
          remember(cacheKey(s.axis, s.index, s.render), { rows: s.rows, cols: s.cols, values }, s.axis);
          if (this.point[s.axis] === s.index && this.h.render[s.axis] === s.render) this.paint(this.views[s.axis]);
        })
        .catch(() => {}); // a plane that cannot be decoded is asked for again

    }
    chain.then(() => this.requestMissing());
  }

  build(h) {
    this.root.replaceChildren();
    const box = el("div", "hf-mpr", this.root);
    const controls = el("div", "hf-controls", box);
    this.windowInputs = {};
    for (const [name, label, lo, hi] of [
      ["center", `Window center (${h.unit})`, h.range[0], h.range[1]],
      ["width", `Window width (${h.unit})`, 1, h.range[2]],
    ]) {
      const wrap = el("label", "hf-slider", controls);
      const head = el("div", "hf-slider-head", wrap);
      el("span", "hf-label", head).textContent = label;
      const value = el("span", "hf-value", head);
      const input = el("input", "", wrap);
      Object.assign(input, { type: "range", min: lo, max: hi, step: 1 });
      input.dataset.control = name;
      input.setAttribute("aria-label", label);
      input.addEventListener("input", () => {
        this[name] = Number(input.value);
        this.edited(1);
      });
      this.windowInputs[name] = { input, value };
    }
    const grid = el("div", "hf-grid", box);
    this.views = h.views.map((v) => this.buildView(grid, v));
  }

  buildView(grid, v) {
    const cell = el("div", "hf-view", grid);
    cell.dataset.axis = v.axis;
    const title = el("div", "hf-title", cell);
    const stage = el("div", "hf-stage", cell);
    stage.style.aspectRatio = `${v.cols * v.col_mm} / ${v.rows * v.row_mm}`;
    const canvas = el("canvas", "hf-canvas", stage);
    canvas.width = v.cols;
    canvas.height = v.rows;
    const ctx = canvas.getContext("2d");
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "hf-overlay");
    svg.setAttribute("viewBox", `0 0 ${v.cols} ${v.rows}`);
    svg.setAttribute("preserveAspectRatio", "none");
    stage.appendChild(svg);
    for (const [edge, text] of Object.entries(v.letters)) el("span", `hf-letter hf-${edge}`, stage).textContent = text;
    const probe = el("span", "hf-probe", stage);
    const wrap = el("label", "hf-slider", cell);
    const head = el("div", "hf-slider-head", wrap);
    el("span", "hf-label", head).textContent = `${v.name} slice`;
    const value = el("span", "hf-value", head);
    const input = el("input", "", wrap);
    Object.assign(input, { type: "range", min: 0, max: Math.max(0, v.n - 1), step: 1, disabled: v.n < 2 });
    input.setAttribute("aria-label", `${v.name} slice`);
    const view = { ...v, cell, title, stage, canvas, ctx, svg, probe, input, value, image: null };
    input.addEventListener("input", () => this.setSlice(view, Number(input.value)));
    stage.addEventListener("wheel", (e) => {
      e.preventDefault();
      this.setSlice(view, this.point[v.axis] + (e.deltaY > 0 ? 1 : -1));
    }, { passive: false });
    this.pointerHandlers(view);
    return view;
  }

  pointerHandlers(view) {
    const { stage } = view;
    let drag = null;
    const toPixel = (e) => {
      const r = stage.getBoundingClientRect();
      const col = Math.min(view.cols - 1, Math.max(0, Math.floor(((e.clientX - r.left) / r.width) * view.cols)));
      const row = Math.min(view.rows - 1, Math.max(0, Math.floor(((e.clientY - r.top) / r.height) * view.rows)));
      return { row, col };
    };
    stage.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      stage.setPointerCapture(e.pointerId);
      drag = { x: e.clientX, y: e.clientY, c: this.center, w: this.width, moved: false };
    });
    stage.addEventListener("pointermove", (e) => {
      const { row, col } = toPixel(e);
      this.showProbe(view, row, col);
      if (!drag) return;
      const dx = e.clientX - drag.x;
      const dy = e.clientY - drag.y;
      if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
      drag.moved = true; // dragging sets the window, as in desktop viewers
      const s = Math.max(0.5, drag.w / 256);
      const [lo, hi, wmax] = this.h.range;
      this.center = Math.round(Math.min(hi, Math.max(lo, drag.c - dy * s)));
      this.width = Math.round(Math.min(wmax, Math.max(1, drag.w + dx * s)));
      this.edited(1);
    });
    stage.addEventListener("pointerup", (e) => {
      if (drag && !drag.moved) {
        // A click moves the crosshair there.
        const { row, col } = toPixel(e);
        this.point[view.down] = view.flip ? view.rows - 1 - row : row;
        this.point[view.across] = col;
        this.moved = { axis: view.down, dir: 1 };
        this.edited(0);
      }
      drag = null;
    });
    stage.addEventListener("pointerleave", () => {
      view.probe.textContent = "";
    });
  }

  showProbe(view, row, col) {
    const entry = view.image;
    if (!entry) return;
    const v = entry.values[row * entry.cols + col];
    view.probe.textContent = `${fmt(v)} ${this.h.unit}`;
  }

  setSlice(view, index) {
    const n = view.n;
    index = Math.min(n - 1, Math.max(0, Math.round(index)));
    if (index === this.point[view.axis]) return;
    this.moved = { axis: view.axis, dir: index > this.point[view.axis] ? 1 : -1 };
    this.point[view.axis] = index;
    this.edited(0);
  }

  edited(what) {
    // The user moved the crosshair (0) or the window (1): paint, and tell the page which.
    this.edits[what] += 1;
    this.syncControls();
    this.paintAll();
    this.send();
  }

  syncControls() {
    for (const [name, { input, value }] of Object.entries(this.windowInputs)) {
      if (Number(input.value) !== this[name]) input.value = this[name];
      value.textContent = fmt(this[name]);
    }
    for (const view of this.views) {
      const i = this.point[view.axis];
      if (Number(view.input.value) !== i) view.input.value = i;
      view.value.textContent = `${i} / ${view.n - 1}`; // voxel indices, as the readout below
      const slab = this.h.slab[view.axis];
      view.title.textContent = slab ? `${view.name} · ${slab}` : view.name;
    }
  }

  paintAll() {
    for (const view of this.views) this.paint(view);
  }

  paint(view) {
    const index = this.point[view.axis];
    const render = this.h.render[view.axis];
    const entry = CACHE.get(cacheKey(view.axis, index, render));
    this.drawCrosshair(view);
    if (!entry) {
      view.cell.classList.add("hf-waiting");
      return;
    }
    view.cell.classList.remove("hf-waiting");
    view.image = entry;
    const { rows, cols, values } = entry;
    if (!view.pixels || view.pixels.width !== cols || view.pixels.height !== rows) {
      view.pixels = view.ctx.createImageData(cols, rows);
    }
    const out = new Uint32Array(view.pixels.data.buffer);
    const pal = this.palette;
    const invert = this.h.invert;
    if (values instanceof Int16Array) {
      const table = int16Lut(this.center, this.width, invert);
      for (let i = 0; i < values.length; i++) out[i] = pal[table[values[i] + 32768]];
    } else {
      for (let i = 0; i < values.length; i++) out[i] = pal[windowValue(values[i], this.center, this.width, invert)];
    }
    view.ctx.putImageData(view.pixels, 0, 0);
    const c = view.canvas;
    c.dataset.index = index;
    c.dataset.render = render;
    c.dataset.window = `${this.center}/${this.width}`;
    c.dataset.painted = String(++this.painted);
  }

  drawCrosshair(view) {
    const { svg, rows, cols } = view;
    const y = (view.flip ? rows - 1 - this.point[view.down] : this.point[view.down]) + 0.5;
    const x = this.point[view.across] + 0.5;
    const gx = Math.max(6, Math.min(rows, cols) / 40);
    const gy = (gx * view.col_mm) / view.row_mm; // the same gap on screen across and down
    const lines = [
      [0, y, x - gx, y, view.down],
      [x + gx, y, cols, y, view.down],
      [x, 0, x, y - gy, view.across],
      [x, y + gy, x, rows, view.across],
    ];
    svg.replaceChildren();
    for (const [x1, y1, x2, y2, axis] of lines) {
      if ((x2 - x1) <= 0 && (y2 - y1) <= 0) continue;
      const line = document.createElementNS(SVG, "line");
      Object.entries({ x1, y1, x2, y2, stroke: COLORS[axis], "stroke-width": 1, "vector-effect": "non-scaling-stroke" })
        .forEach(([k, v]) => line.setAttribute(k, v));
      line.setAttribute("class", "hf-line");
      svg.appendChild(line);
    }
  }

  wants() {
    const out = [];
    const add = (axis, index) => {
      const view = this.views[axis];
      if (index < 0 || index >= view.n) return;
      if (CACHE.has(cacheKey(axis, index, this.h.render[axis]))) return;
      if (!out.some(([a, i]) => a === axis && i === index)) out.push([axis, index]);
    };
    for (const view of this.views) add(view.axis, this.point[view.axis]);
    const { axis, dir } = this.moved;
    for (let d = 1; d <= AHEAD; d++) add(axis, this.point[axis] + dir * d);
    for (let d = 1; d <= 2; d++) add(axis, this.point[axis] - dir * d);
    for (const view of this.views) {
      add(view.axis, this.point[view.axis] + 1);
      add(view.axis, this.point[view.axis] - 1);
    }
    return out.slice(0, 20);
  }

  urgent() {
    // Planes are needed soon: one at the crosshair is missing, or fewer than half the prefetch
    // distance is held ahead of the scroll.
    const held = (axis, index) => CACHE.has(cacheKey(axis, index, this.h.render[axis]));
    if (this.views.some((view) => !held(view.axis, this.point[view.axis]))) return true;
    const { axis, dir } = this.moved;
    for (let d = 1; d <= AHEAD / 2; d++) {
      const index = this.point[axis] + dir * d;
      if (index < 0 || index >= this.views[axis].n) break;
      if (!held(axis, index)) return true;
    }
    return false;
  }

  send() {
    // When planes are needed: at once, then at most every 25 ms. Otherwise once the user pauses
    // (150 ms), for the readout on the page: scrolling through held planes costs the server
    // one rerun per batch of planes, not one per step; the last state always goes.
    clearTimeout(this.sendTimer);
    const wait = this.urgent() ? Math.max(0, 25 - (performance.now() - this.lastSent)) : 150;
    this.sendTimer = setTimeout(() => {
      this.lastSent = performance.now();
      const want = this.wants();
      this.lastWant = JSON.stringify(want);
      this.seq += 1;
      this.setStateValue("view", {
        seq: this.seq, epoch: this.epoch, vol: this.volume, edits: this.edits.slice(), point: this.point.slice(),
        center: this.center, width: this.width, want,
      });
    }, wait);
  }

  requestMissing() {
    // After planes arrive: ask for the ones still missing around the crosshair, once.
    const want = this.wants();
    if (want.length && JSON.stringify(want) !== this.lastWant) this.send();
  }
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  const host = parentElement.querySelector(".hf-root") || parentElement;
  if (!host.__viewer) host.__viewer = new Viewer(host);
  if (data && data.byteLength) host.__viewer.receive(data, setStateValue);
}
export { windowValue, rint };
