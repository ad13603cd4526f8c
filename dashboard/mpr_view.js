// Hounsfield's three linked views, windowed and drawn in the browser.
//
// Python sends planes of values (int16 or float32) with a JSON header: byte-shuffled with the
// high bytes zlib-compressed when prefetched, as they are when the browser is waiting for them. This
// module keeps them in a cache that outlives remounts, windows them with DICOM's LINEAR function (the
// same arithmetic as core.windowing.window, so the pixels are identical) and paints canvases. A
// segmentation overlay travels the same way as uint8 label planes (zlib), cached by the label map's
// key, and is blended into the same pixels. A slice step or a window change paints at once from the
// cache; the state goes back to Python (setStateValue 'view') with the planes still wanted, the
// measurements and the layout, and Python answers with those planes. Python-side changes (presets,
// the histogram page) arrive with a new `rev` (crosshair, window) and are adopted.
//
// Each view zooms (Ctrl/Cmd + wheel, pinch) and pans (middle button or Shift + drag) with a CSS
// transform of its picture; measurements are kept in the plane's array coordinates (row, col),
// voxel centres at integers, not flipped for display.

const CACHE = new Map(); // `${axis}|${index}|${render}` -> {rows, cols, values}
const LABELS = new Map(); // `${key}|${axis}|${index}` -> Uint8Array (display order, like the planes)
const PADDING = new Map(); // cacheKey -> packed bits (display order): outside the scan; absent when none is
let cacheVolume = null;
const CACHE_PER_AXIS = 96;
const AHEAD = 12; // planes prefetched in the direction of scrolling
const COLORS = ["#e63c3c", "#46c85a", "#f0d232"]; // the plane fixing axis 0, 1, 2 (as 3D Slicer)
const SVG = "http://www.w3.org/2000/svg";
const NOTCH = 100; // wheel pixels per slice: one notch of a mouse wheel
const LINE_PX = 40; // a wheel "line" in pixels (deltaMode 1)
const HIT_PX = 8; // how near (screen pixels) the pointer must be to grab a handle
const TOOLS = [["navigate", "Navigate"], ["length", "Length"], ["angle", "Angle"], ["ellipse", "Ellipse"],
  ["rectangle", "Rectangle"], ["point", "Point"]];
const KIND_NAMES = { length: "Length", angle: "Angle", ellipse: "Ellipse", rectangle: "Rectangle", point: "Point" };

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

async function inflateAll(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function inflate(bytes, dtype, rows, cols, raw) {
  if (dtype === "u1" || dtype === "b1") return inflateAll(bytes); // labels, or padding bits: all compressed
  const k = dtype === "i2" ? 2 : 4;
  const n = rows * cols;
  if (raw === bytes.length) {
    const copy = bytes.slice(); // aligned, and free of the message it came in
    return k === 2 ? new Int16Array(copy.buffer) : new Float32Array(copy.buffer);
  }
  // Byte planes, least significant first: the low half as it is, the high half compressed.
  const high = await inflateAll(bytes.subarray(raw));
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

function remember(store, key, entry, prefix) {
  store.delete(key);
  store.set(key, entry);
  const mine = [...store.keys()].filter((k) => k.startsWith(prefix));
  for (let i = 0; i < mine.length - CACHE_PER_AXIS; i++) {
    store.delete(mine[i]);
    PADDING.delete(mine[i]);
  }
}

function isPadding(pad, i) {
  return pad ? (pad[i >> 3] >> (7 - (i & 7))) & 1 : 0;
}

function el(tag, cls, parent) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (parent) parent.appendChild(e);
  return e;
}

function svgEl(tag, attrs, parent) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function fmt(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function decimal(v, places = 3) {
  // core.numbers.decimal: at most `places` decimals, trailing zeros dropped, "—" when not a number.
  if (!Number.isFinite(v)) return "—";
  const a = Math.abs(v);
  let t = a.toFixed(places);
  // toFixed takes a half away from zero, Python's format to the even digit: they differ on exact halves
  // only, whose exact decimals end in a 5 (toFixed writes a number's exact decimals when given enough).
  const exact = a.toFixed(places + 30);
  if (exact.endsWith(`5${"0".repeat(29)}`)) {
    const down = exact.slice(0, exact.length - 30).replace(/\.$/, "");
    if (Number(down.at(-1)) % 2 === 0) t = down;
  }
  if (places > 0) t = t.replace(/0+$/, "").replace(/\.$/, "");
  return v < 0 && t !== "0" && t !== "" ? `-${t}` : t || "0";
}

function measurementNames(measurements) {
  // core.annotations.measurement_names: numbered within their kind, "Length 1", "Length 2", "Angle 1".
  const seen = {};
  return measurements.map((m) => {
    seen[m.kind] = (seen[m.kind] || 0) + 1;
    return `${KIND_NAMES[m.kind]} ${seen[m.kind]}`;
  });
}

function wheelPixels(e, height) {
  // deltaY in pixels whatever the device reports (pixels, lines or pages).
  if (e.deltaMode === 1) return e.deltaY * LINE_PX;
  if (e.deltaMode === 2) return e.deltaY * height;
  return e.deltaY;
}

// ---- measurements: values from a plane, in the plane's array coordinates ----

function boxOf(points) {
  const [[r0, c0], [r1, c1]] = points;
  return [Math.min(r0, r1), Math.max(r0, r1), Math.min(c0, c1), Math.max(c0, c1)];
}

function regionStats(kind, points, entry, view, pad = null) {
  // Pixel centres inside the rectangle, or inside the ellipse inscribed in it (core.annotations.measure).
  const [r0, r1, c0, c1] = boxOf(points);
  const rc = (r0 + r1) / 2;
  const cc = (c0 + c1) / 2;
  const a = (r1 - r0) / 2;
  const b = (c1 - c0) / 2;
  let n = 0;
  let sum = 0;
  let min = Infinity;
  let max = -Infinity;
  const vals = [];
  if (entry) {
    for (let i = Math.max(0, Math.ceil(r0)); i <= Math.min(view.rows - 1, Math.floor(r1)); i++) {
      const di = view.flip ? view.rows - 1 - i : i;
      for (let j = Math.max(0, Math.ceil(c0)); j <= Math.min(view.cols - 1, Math.floor(c1)); j++) {
        if (kind === "ellipse") {
          if (!(a > 0 && b > 0)) continue;
          const u = (i - rc) / a;
          const v = (j - cc) / b;
          if (u * u + v * v > 1) continue;
        }
        if (isPadding(pad, di * entry.cols + j)) continue; // outside the scan, as core.measure leaves it out
        const x = entry.values[di * entry.cols + j];
        vals.push(x);
        n += 1;
        sum += x;
        if (x < min) min = x;
        if (x > max) max = x;
      }
    }
  }
  const area = n * view.row_mm * view.col_mm;
  if (!n) return { mean: NaN, sd: NaN, min: NaN, max: NaN, area_mm2: 0, n: 0 };
  const mean = sum / n;
  let ss = 0;
  for (const x of vals) ss += (x - mean) * (x - mean);
  return { mean, sd: Math.sqrt(ss / n), min, max, area_mm2: area, n };
}

function angleDeg(points, view) {
  const [[ar, ac], [vr, vc], [br, bc]] = points;
  const u = [(ar - vr) * view.row_mm, (ac - vc) * view.col_mm];
  const w = [(br - vr) * view.row_mm, (bc - vc) * view.col_mm];
  const nu = Math.hypot(...u);
  const nw = Math.hypot(...w);
  if (!nu || !nw) return NaN;
  const cos = Math.max(-1, Math.min(1, (u[0] * w[0] + u[1] * w[1]) / (nu * nw)));
  return (Math.acos(cos) * 180) / Math.PI;
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
    this.mrev = null;
    this.measurements = [];
    this.selected = null;
    this.ui = null; // layout, tool, cine: adopted from the page once, then the browser's
    this.cine = null;
    this.counter = 0;
  }

  receive(bytes, setStateValue) {
    this.setStateValue = setStateValue;
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const hlen = dv.getUint32(0, true);
    const h = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + hlen)));
    const base = 4 + hlen;
    if (h.vol !== cacheVolume) {
      CACHE.clear();
      LABELS.clear();
      PADDING.clear();
      cacheVolume = h.vol;
    }
    if (h.vol !== this.volume) {
      this.volume = h.vol;
      this.rev = [null, null]; // a new series: take its settings whatever the revision numbers
      this.mrev = null;
      this.stopCine();
    }
    this.h = h;
    if (this.ui === null) this.ui = { layout: "all", tool: "navigate", fps: 10, cine: 0, ...(h.ui || {}) };
    if (h.single) Object.assign(this.ui, { layout: "0", cine: 0 }); // one slice: its own plane only
    if (h.mrev !== this.mrev) {
      this.measurements = (h.measurements || []).map((m) => ({ ...m, points: m.points.map((p) => p.slice()) }));
      this.mrev = h.mrev;
      this.selected = null;
    }
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
    this.overlay = h.overlay || null;
    this.syncControls();
    this.showLegend();
    this.paintAll();
    // Planes are decoded one after the other, the crosshair's first, each painted when ready;
    // then the planes still missing are asked for.
    const atPoint = (s) => this.point[s.axis] === s.index;
    const order = h.slices.slice().sort((a, b) => atPoint(b) - atPoint(a));
    let chain = Promise.resolve();
    for (const s of order) {
      chain = chain.then(() => inflate(bytes.subarray(base + s.offset, base + s.offset + s.length), s.dtype, s.rows, s.cols, s.raw))
        .then((values) => {
          if (s.dtype === "u1") remember(LABELS, `${s.key}|${s.axis}|${s.index}`, values, `${s.key}|${s.axis}|`);
          else if (s.dtype === "b1") PADDING.set(cacheKey(s.axis, s.index, s.render), values);
          else remember(CACHE, cacheKey(s.axis, s.index, s.render), { rows: s.rows, cols: s.cols, values }, `${s.axis}|`);
          if (this.point[s.axis] === s.index) this.paint(this.views[s.axis]);
        })
        .catch(() => {}); // a plane that cannot be decoded is asked for again
    }
    chain.then(() => this.requestMissing());
  }

  // ---- building the page ----

  build(h) {
    this.stopCine();
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
    this.buildToolbar(box, h);
    this.grid = el("div", "hf-grid", box);
    this.views = h.views.map((v) => this.buildView(this.grid, v));
    this.legend = el("div", "hf-legend", box);
    this.list = el("div", "hf-list", box);
    this.applyLayout();
    this.showList();
  }

  buildToolbar(box, h) {
    const bar = el("div", "hf-toolbar", box);
    const tools = el("div", "hf-tools", bar);
    tools.setAttribute("role", "toolbar");
    tools.setAttribute("aria-label", "Tools");
    this.toolButtons = {};
    for (const [tool, label] of TOOLS) {
      const b = el("button", "hf-button", tools);
      b.type = "button";
      b.textContent = label;
      b.dataset.tool = tool;
      b.addEventListener("click", () => {
        this.ui.tool = tool;
        this.placing = null;
        this.showTools();
        this.send();
      });
      this.toolButtons[tool] = b;
    }
    const reset = el("button", "hf-button", tools);
    reset.type = "button";
    reset.textContent = "Reset zoom";
    reset.dataset.action = "reset";
    reset.title = "Zoom and pan back to the whole picture (double-click or R in a view)";
    reset.addEventListener("click", () => this.views.forEach((v) => this.resetZoom(v)));

    const right = el("div", "hf-tools", bar);
    if (h.single) right.style.display = "none"; // layout and cine mean nothing for a single slice
    const layoutLabel = el("label", "hf-field", right);
    el("span", "", layoutLabel).textContent = "Layout";
    this.layoutSelect = el("select", "", layoutLabel);
    this.layoutSelect.setAttribute("aria-label", "Layout");
    for (const [value, text] of [["all", "Three views"], ...h.views.map((v) => [String(v.axis), `${v.name} only`])]) {
      const o = el("option", "", this.layoutSelect);
      o.value = value;
      o.textContent = text;
    }
    this.layoutSelect.addEventListener("change", () => {
      this.ui.layout = this.layoutSelect.value;
      this.applyLayout();
      this.send();
    });
    const cineLabel = el("label", "hf-field", right);
    el("span", "", cineLabel).textContent = "Cine";
    this.cineSelect = el("select", "", cineLabel);
    this.cineSelect.setAttribute("aria-label", "Cine view");
    for (const v of h.views) {
      const o = el("option", "", this.cineSelect);
      o.value = String(v.axis);
      o.textContent = v.name;
    }
    this.cineSelect.addEventListener("change", () => {
      this.ui.cine = Number(this.cineSelect.value);
      if (this.cine) this.startCine();
      this.send();
    });
    const fpsLabel = el("label", "hf-field", right);
    this.fpsInput = el("input", "hf-fps", fpsLabel);
    Object.assign(this.fpsInput, { type: "number", min: 1, max: 60, step: 1 });
    this.fpsInput.setAttribute("aria-label", "Frames per second");
    el("span", "", fpsLabel).textContent = "frames/s";
    this.fpsInput.addEventListener("change", () => {
      this.ui.fps = Math.min(60, Math.max(1, Math.round(Number(this.fpsInput.value) || 10)));
      this.fpsInput.value = this.ui.fps;
      if (this.cine) this.startCine();
      this.send();
    });
    this.playButton = el("button", "hf-button", right);
    this.playButton.type = "button";
    this.playButton.dataset.action = "play";
    this.playButton.addEventListener("click", () => (this.cine ? this.stopCine() : this.startCine()));
    this.showTools();
  }

  showTools() {
    for (const [tool, b] of Object.entries(this.toolButtons)) {
      b.classList.toggle("hf-active", tool === this.ui.tool);
      b.setAttribute("aria-pressed", String(tool === this.ui.tool));
    }
    this.layoutSelect.value = this.ui.layout;
    this.cineSelect.value = String(this.ui.cine);
    this.fpsInput.value = this.ui.fps;
    this.playButton.textContent = this.cine ? "Stop" : "Play";
    for (const v of this.views || []) v.stage.dataset.tool = this.ui.tool;
  }

  applyLayout() {
    const one = this.ui.layout !== "all";
    this.grid.classList.toggle("hf-single", one);
    for (const v of this.views) v.cell.hidden = one && String(v.axis) !== this.ui.layout;
    this.showTools();
  }

  buildView(grid, v) {
    const cell = el("div", "hf-view", grid);
    cell.dataset.axis = v.axis;
    const title = el("div", "hf-title", cell);
    const stage = el("div", "hf-stage", cell);
    const aspect = (v.cols * v.col_mm) / (v.rows * v.row_mm);
    stage.style.aspectRatio = `${v.cols * v.col_mm} / ${v.rows * v.row_mm}`;
    cell.style.setProperty("--hf-cell-aspect", String(aspect));
    stage.tabIndex = 0;
    stage.setAttribute("aria-label", `${v.name} view`);
    const pane = el("div", "hf-pane", stage);
    const canvas = el("canvas", "hf-canvas", pane);
    canvas.width = v.cols;
    canvas.height = v.rows;
    const ctx = canvas.getContext("2d");
    const svg = svgEl("svg", { class: "hf-overlay", viewBox: `0 0 ${v.cols} ${v.rows}`, preserveAspectRatio: "none" }, pane);
    const cross = svgEl("g", {}, svg);
    const marks = svgEl("g", {}, svg);
    const tags = el("div", "hf-tags", stage);
    for (const [edge, text] of Object.entries(v.letters)) el("span", `hf-letter hf-${edge}`, stage).textContent = text;
    // The pointer readouts: on a line under the view, so that they never cover its letters or the
    // image, whatever the view's size (they wrap when it is narrow).
    const readout = el("div", "hf-readout", cell);
    const probe = el("span", "hf-probe", readout);
    const pos = el("span", "hf-pos", readout);
    const wrap = el("label", "hf-slider", cell);
    const head = el("div", "hf-slider-head", wrap);
    el("span", "hf-label", head).textContent = `${v.name} slice`;
    const value = el("span", "hf-value", head);
    const input = el("input", "", wrap);
    Object.assign(input, { type: "range", min: 0, max: Math.max(0, v.n - 1), step: 1, disabled: v.n < 2 });
    input.setAttribute("aria-label", `${v.name} slice`);
    const view = { ...v, cell, title, stage, pane, canvas, ctx, svg, cross, marks, tags, probe, pos, input, value,
      image: null, zoom: { s: 1, tx: 0, ty: 0 }, wheel: 0 };
    input.addEventListener("input", () => this.setSlice(view, Number(input.value)));
    stage.addEventListener("wheel", (e) => this.onWheel(view, e), { passive: false });
    stage.addEventListener("keydown", (e) => this.onKey(view, e));
    stage.addEventListener("dblclick", (e) => {
      if (this.ui.tool === "navigate") {
        e.preventDefault();
        this.resetZoom(view);
      }
    });
    this.pointerHandlers(view);
    return view;
  }

  // ---- zoom, pan, wheel, keys ----

  applyZoom(view) {
    const { s, tx, ty } = view.zoom;
    view.pane.style.transform = `translate(${tx}px, ${ty}px) scale(${s})`;
    view.stage.dataset.zoom = `${s}|${tx}|${ty}`;
    this.drawMarks(view);
  }

  resetZoom(view) {
    view.zoom = { s: 1, tx: 0, ty: 0 };
    this.applyZoom(view);
  }

  zoomAt(view, px, py, factor) {
    const z = view.zoom;
    const s = Math.min(32, Math.max(1, z.s * factor));
    const k = s / z.s;
    view.zoom = { s, tx: px - (px - z.tx) * k, ty: py - (py - z.ty) * k };
    if (s === 1) view.zoom = { s: 1, tx: 0, ty: 0 };
    this.applyZoom(view);
  }

  onWheel(view, e) {
    e.preventDefault();
    const r = view.stage.getBoundingClientRect();
    const px = wheelPixels(e, r.height);
    if (e.ctrlKey || e.metaKey) {
      // Ctrl/Cmd + wheel, and a trackpad's pinch (Chromium sends it as a wheel with ctrlKey).
      this.zoomAt(view, e.clientX - r.left, e.clientY - r.top, Math.exp(-px * 0.0025));
      return;
    }
    // Slices by the amount turned: a notch (100 px) is one slice, small trackpad moves add up.
    if (Math.sign(px) !== Math.sign(view.wheel)) view.wheel = 0;
    view.wheel += px;
    const steps = Math.trunc(view.wheel / NOTCH);
    if (steps) {
      view.wheel -= steps * NOTCH;
      this.setSlice(view, this.point[view.axis] + steps);
    }
  }

  onKey(view, e) {
    const i = this.point[view.axis];
    const page = Math.max(1, Math.round(view.n / 10));
    const moves = { ArrowUp: i - 1, ArrowLeft: i - 1, ArrowDown: i + 1, ArrowRight: i + 1, PageUp: i - page,
      PageDown: i + page, Home: 0, End: view.n - 1 };
    if (e.key in moves) {
      e.preventDefault();
      this.setSlice(view, moves[e.key]);
    } else if (e.key === "r" || e.key === "R") {
      this.resetZoom(view);
    } else if ((e.key === "Delete" || e.key === "Backspace") && this.selected) {
      e.preventDefault();
      this.deleteMeasurement(this.selected);
    } else if (e.key === "Escape") {
      if (this.placing) this.measurements = this.measurements.filter((m) => m !== this.placing.m);
      this.placing = null;
      this.selected = null;
      this.measured();
    }
  }

  // ---- pointer: plane coordinates ----

  local(view, e) {
    const r = view.stage.getBoundingClientRect();
    return { x: e.clientX - r.left, y: e.clientY - r.top, w: r.width, h: r.height };
  }

  toPlane(view, e) {
    // (row, col) in array coordinates, voxel centres at integers; continuous.
    const { x, y, w, h } = this.local(view, e);
    const { s, tx, ty } = view.zoom;
    const dc = (((x - tx) / s) / w) * view.cols - 0.5;
    const dr = (((y - ty) / s) / h) * view.rows - 0.5;
    return [view.flip ? view.rows - 1 - dr : dr, dc];
  }

  toScreen(view, [row, col]) {
    // Stage pixels of a plane point.
    const r = view.stage.getBoundingClientRect();
    const { s, tx, ty } = view.zoom;
    const dr = view.flip ? view.rows - 1 - row : row;
    return [tx + (((col + 0.5) / view.cols) * r.width) * s, ty + (((dr + 0.5) / view.rows) * r.height) * s];
  }

  clampPoint(view, [row, col]) {
    return [Math.min(view.rows - 0.5, Math.max(-0.5, row)), Math.min(view.cols - 0.5, Math.max(-0.5, col))];
  }

  pixel(view, [row, col]) {
    return [Math.min(view.rows - 1, Math.max(0, Math.round(row))), Math.min(view.cols - 1, Math.max(0, Math.round(col)))];
  }

  hit(view, e) {
    // The measurement handle (or measurement) under the pointer on this view's slice.
    const { x, y } = this.local(view, e);
    let best = null;
    for (const m of this.shown(view)) {
      m.points.forEach((p, k) => {
        const [sx, sy] = this.toScreen(view, p);
        const d = Math.hypot(sx - x, sy - y);
        if (d <= HIT_PX && (!best || d < best.d)) best = { m, k, d };
      });
    }
    return best;
  }

  hitBody(view, e) {
    // The measurement whose line or outline passes under the pointer: dragged whole.
    const { x, y } = this.local(view, e);
    const near = (a, b) => {
      const [dx, dy] = [b[0] - a[0], b[1] - a[1]];
      const t = Math.max(0, Math.min(1, ((x - a[0]) * dx + (y - a[1]) * dy) / (dx * dx + dy * dy || 1)));
      return Math.hypot(a[0] + t * dx - x, a[1] + t * dy - y) <= HIT_PX;
    };
    for (const m of this.shown(view).reverse()) {
      const pts = m.points.map((p) => this.toScreen(view, p));
      if (m.kind === "length" && near(pts[0], pts[1])) return m;
      if (m.kind === "angle" && (near(pts[0], pts[1]) || near(pts[1], pts[2]))) return m;
      if (m.kind === "rectangle") {
        const [[x0, y0], [x1, y1]] = pts;
        const c = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]];
        if (c.some((p, k) => near(p, c[(k + 1) % 4]))) return m;
      }
      if (m.kind === "ellipse") {
        const [[x0, y0], [x1, y1]] = pts;
        const [a, b] = [Math.abs(x1 - x0) / 2, Math.abs(y1 - y0) / 2];
        if (a > 0 && b > 0) {
          const r = Math.hypot((x - (x0 + x1) / 2) / a, (y - (y0 + y1) / 2) / b);
          if (Math.abs(r - 1) * Math.min(a, b) <= HIT_PX) return m;
        }
      }
    }
    return null;
  }

  shown(view) {
    return this.measurements.filter((m) => m.axis === view.axis && m.index === this.point[view.axis]);
  }

  pointerHandlers(view) {
    const { stage } = view;
    let drag = null;
    stage.addEventListener("mousedown", (e) => {
      if (e.button === 1) e.preventDefault(); // no autoscroll: the middle button pans
    });
    stage.addEventListener("pointerdown", (e) => {
      stage.focus({ preventScroll: true });
      if (e.button === 1 || (e.button === 0 && e.shiftKey)) {
        e.preventDefault();
        stage.setPointerCapture(e.pointerId);
        drag = { kind: "pan", x: e.clientX, y: e.clientY, z: { ...view.zoom } };
        return;
      }
      if (e.button !== 0) return;
      stage.setPointerCapture(e.pointerId);
      const at = this.clampPoint(view, this.toPlane(view, e));
      if (this.placing && this.placing.view === view) {
        // An angle's third point: the click ends it.
        this.placing.m.points[2] = at;
        this.placing = null;
        this.measured();
        drag = null;
        return;
      }
      const hit = this.hit(view, e);
      if (hit) {
        this.selected = hit.m.id;
        drag = { kind: "handle", m: hit.m, k: hit.k };
        this.showList();
        this.drawMarks(view);
        return;
      }
      const body = this.hitBody(view, e);
      if (body) {
        this.selected = body.id;
        drag = { kind: "move", m: body, from: this.toPlane(view, e), orig: body.points.map((p) => p.slice()) };
        this.showList();
        this.drawMarks(view);
        return;
      }
      const tool = this.ui.tool;
      if (tool === "navigate") {
        drag = { kind: "window", x: e.clientX, y: e.clientY, c: this.center, w: this.width, moved: false };
        return;
      }
      const m = { id: `m${Date.now().toString(36)}${(this.counter += 1)}`, kind: tool, axis: view.axis,
        index: this.point[view.axis], points: [], label: "" };
      m.points = tool === "point" ? [at] : tool === "angle" ? [at, at.slice(), at.slice()] : [at, at.slice()];
      this.measurements.push(m);
      this.selected = m.id;
      drag = tool === "point" ? null : { kind: "handle", m, k: 1, fresh: true };
      if (tool === "point") this.measured();
      else this.drawMarks(view);
    });
    stage.addEventListener("pointermove", (e) => {
      this.showProbe(view, e);
      if (this.placing && this.placing.view === view && !drag) {
        this.placing.m.points[2] = this.clampPoint(view, this.toPlane(view, e));
        this.drawMarks(view);
        return;
      }
      if (!drag) return;
      if (drag.kind === "pan") {
        view.zoom = { ...drag.z, tx: drag.z.tx + e.clientX - drag.x, ty: drag.z.ty + e.clientY - drag.y };
        this.applyZoom(view);
        return;
      }
      if (drag.kind === "move") {
        // The whole measurement, kept inside the plane.
        const [r, c] = this.toPlane(view, e);
        let dr = r - drag.from[0];
        let dc = c - drag.from[1];
        for (const [pr, pc] of drag.orig) {
          dr = Math.min(view.rows - 0.5 - pr, Math.max(-0.5 - pr, dr));
          dc = Math.min(view.cols - 0.5 - pc, Math.max(-0.5 - pc, dc));
        }
        drag.m.points = drag.orig.map(([pr, pc]) => [pr + dr, pc + dc]);
        drag.moved = true;
        this.drawMarks(view);
        view.stage.dataset.drawn = String((Number(view.stage.dataset.drawn) || 0) + 1);
        return;
      }
      if (drag.kind === "handle") {
        const p = this.clampPoint(view, this.toPlane(view, e));
        drag.m.points[drag.k] = p;
        if (drag.fresh && drag.m.kind === "angle") drag.m.points[2] = p.slice();
        drag.moved = true;
        this.drawMarks(view);
        view.stage.dataset.drawn = String((Number(view.stage.dataset.drawn) || 0) + 1);
        return;
      }
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
    const end = (e) => {
      if (drag && drag.kind === "window" && !drag.moved && e.type === "pointerup") {
        // A click moves the crosshair there.
        const [row, col] = this.pixel(view, this.toPlane(view, e));
        this.point[view.down] = row;
        this.point[view.across] = col;
        this.moved = { axis: view.down, dir: 1 };
        this.selected = null;
        this.edited(0);
      } else if (drag && drag.kind === "move") {
        this.measured();
      } else if (drag && drag.kind === "handle") {
        if (drag.fresh && drag.m.kind === "angle") {
          this.placing = { m: drag.m, view }; // then a click places the other arm
        } else if (drag.fresh && !drag.moved && drag.m.kind !== "point") {
          this.measurements = this.measurements.filter((m) => m !== drag.m); // a click is not a measurement
          this.selected = null;
        }
        this.measured();
      }
      drag = null;
    };
    stage.addEventListener("pointerup", end);
    stage.addEventListener("pointercancel", end);
    stage.addEventListener("pointerleave", () => {
      view.probe.textContent = "";
      view.pos.textContent = "";
    });
  }

  showProbe(view, e) {
    const entry = view.image;
    if (!entry) return;
    const [row, col] = this.pixel(view, this.toPlane(view, e));
    const dr = view.flip ? view.rows - 1 - row : row;
    const v = entry.values[dr * entry.cols + col];
    const pad = PADDING.get(cacheKey(view.axis, this.point[view.axis], this.h.render[view.axis]));
    view.probe.textContent = isPadding(pad, dr * entry.cols + col) ? "outside the scan" : `${decimal(v)} ${this.h.unit}`;
    const ijk = this.point.slice();
    ijk[view.down] = row;
    ijk[view.across] = col;
    const [x, y, z] = this.patient(ijk);
    view.pos.textContent = `x ${decimal(x, 1)}, y ${decimal(y, 1)}, z ${decimal(z, 1)} mm (LPS)`;
  }

  patient([k, j, i]) {
    // core.Volume.patient_position: each slice's own position, then along its rows and columns.
    const g = this.h.geom;
    const p = g.positions[Math.min(g.positions.length - 1, Math.max(0, k))];
    return [0, 1, 2].map((d) => p[d] + i * g.dx * g.row_dir[d] + j * g.dy * g.col_dir[d]);
  }

  // ---- slices ----

  setSlice(view, index) {
    const n = view.n;
    index = Math.min(n - 1, Math.max(0, Math.round(index)));
    if (index === this.point[view.axis]) return;
    this.moved = { axis: view.axis, dir: index > this.point[view.axis] ? 1 : -1 };
    this.point[view.axis] = index;
    this.edited(0);
  }

  startCine() {
    this.stopCine(false);
    const view = this.views[this.ui.cine];
    this.cine = setInterval(() => {
      const i = this.point[view.axis];
      this.setSlice(view, i + 1 >= view.n ? 0 : i + 1); // loops
    }, 1000 / this.ui.fps);
    this.showTools();
  }

  stopCine(show = true) {
    if (this.cine) clearInterval(this.cine);
    this.cine = null;
    if (show && this.playButton) this.showTools();
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
      view.value.textContent = `${i + 1} / ${view.n}`; // slice numbers as people count them
      const slab = this.h.slab[view.axis];
      view.title.textContent = slab ? `${view.name} · ${slab}` : view.name;
    }
  }

  // ---- painting ----

  paintAll() {
    for (const view of this.views) this.paint(view);
  }

  paint(view) {
    const index = this.point[view.axis];
    const render = this.h.render[view.axis];
    const entry = CACHE.get(cacheKey(view.axis, index, render));
    this.drawCrosshair(view);
    this.drawMarks(view);
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
    const labels = this.overlay ? LABELS.get(`${this.overlay.key}|${view.axis}|${index}`) : null;
    if (labels) this.blend(view.pixels.data, labels, rows, cols);
    view.ctx.putImageData(view.pixels, 0, 0);
    const c = view.canvas;
    c.dataset.index = index;
    c.dataset.render = render;
    c.dataset.window = `${this.center}/${this.width}`;
    c.dataset.overlay = labels ? `${this.overlay.key}|${this.overlay.opacity}|${this.overlay.outline}` : "";
    c.dataset.painted = String(++this.painted);
  }

  blend(px, labels, rows, cols) {
    // Each labelled pixel (or only the edge of each label): colour * a + grey * (1 - a), rounded.
    const a = this.overlay.opacity;
    const colors = this.overlay.colors;
    const outline = this.overlay.outline;
    for (let i = 0; i < labels.length; i++) {
      const lab = labels[i];
      if (!lab) continue;
      if (outline) {
        const r = (i / cols) | 0;
        const c = i - r * cols;
        const inner = c > 0 && c < cols - 1 && r > 0 && r < rows - 1 && labels[i - 1] === lab && labels[i + 1] === lab
          && labels[i - cols] === lab && labels[i + cols] === lab;
        if (inner) continue;
      }
      const rgb = colors[lab];
      if (!rgb) continue;
      const o = i * 4;
      px[o] = Math.round(px[o] * (1 - a) + rgb[0] * a);
      px[o + 1] = Math.round(px[o + 1] * (1 - a) + rgb[1] * a);
      px[o + 2] = Math.round(px[o + 2] * (1 - a) + rgb[2] * a);
    }
  }

  showLegend() {
    this.legend.replaceChildren();
    if (!this.overlay) return;
    for (const [lab, name] of this.overlay.legend) {
      const item = el("span", "hf-legend-item", this.legend);
      const sw = el("span", "hf-swatch", item);
      const [r, g, b] = this.overlay.colors[lab];
      sw.style.background = `rgb(${r}, ${g}, ${b})`;
      el("span", "", item).textContent = name;
    }
  }

  drawCrosshair(view) {
    const { cross, rows, cols } = view;
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
    cross.replaceChildren();
    for (const [x1, y1, x2, y2, axis] of lines) {
      if ((x2 - x1) <= 0 && (y2 - y1) <= 0) continue;
      svgEl("line", { x1, y1, x2, y2, stroke: COLORS[axis], "stroke-width": 1, "vector-effect": "non-scaling-stroke",
        class: "hf-line" }, cross);
    }
  }

  // ---- measurements ----

  values(m, view) {
    // What the browser measures from the plane it holds (Python recomputes exactly for exports).
    if (m.kind === "length") {
      const [[r0, c0], [r1, c1]] = m.points;
      return { length_mm: Math.hypot((r1 - r0) * view.row_mm, (c1 - c0) * view.col_mm) };
    }
    if (m.kind === "angle") return { angle_deg: angleDeg(m.points, view) };
    const key = cacheKey(view.axis, m.index, this.h.render[view.axis]);
    const entry = CACHE.get(key);
    const pad = PADDING.get(key) || null;
    if (m.kind === "point") {
      const [row, col] = this.pixel(view, m.points[0]);
      const i = (view.flip ? view.rows - 1 - row : row) * view.cols + col;
      return { value: entry && !isPadding(pad, i) ? entry.values[i] : NaN };
    }
    return regionStats(m.kind, m.points, entry, view, pad);
  }

  describe(m, view, short = false) {
    // Numbers as core.numbers writes them on the page (the same decimals as the page's table).
    const v = this.values(m, view);
    const u = this.h.unit;
    if (m.kind === "length") return `${decimal(v.length_mm)} mm`;
    if (m.kind === "angle") return `${decimal(v.angle_deg, 1)}°`;
    if (m.kind === "point") return `${decimal(v.value)} ${u}`;
    const [mean, sd, area] = [decimal(v.mean, 1), decimal(v.sd, 1), decimal(v.area_mm2, 1)];
    if (short) return `${mean} ± ${sd} ${u}, ${area} mm²`;
    return `mean ${mean} ${u}, SD ${sd} ${u}, min ${decimal(v.min, 1)} ${u}, max ${decimal(v.max, 1)} ${u}, ${area} mm²`;
  }

  placeTag(view, tag, [sx, sy], placed) {
    // Beside the last point, inside the view (to the left or above it when there is no room), and
    // below (else above) the tags already placed that it would cover.
    const W = view.stage.clientWidth;
    const H = view.stage.clientHeight;
    const [w, h, gap, m] = [tag.offsetWidth, tag.offsetHeight, 6, 2];
    let x = sx + gap;
    let y0 = sy + gap;
    if (!W || !H || sx < 0 || sy < 0 || sx > W || sy > H) {
      // A hidden view, or a point zoomed out of sight: beside it, clipped with it.
      Object.assign(tag.style, { left: `${x}px`, top: `${y0}px` });
      return;
    }
    if (x + w > W - m) x = sx - gap - w;
    x = Math.max(m, Math.min(x, W - m - w));
    if (y0 + h > H - m) y0 = sy - gap - h;
    y0 = Math.max(m, Math.min(y0, H - m - h));
    const hit = (y) => placed.find((r) => x < r.x + r.w && r.x < x + w && y < r.y + r.h && r.y < y + h);
    const slide = (down) => {
      let y = y0;
      for (let i = 0; i <= placed.length; i++) {
        const r = hit(y);
        if (!r) return y;
        y = down ? r.y + r.h + 1 : r.y - h - 1;
        if (y < m || y + h > H - m) return null;
      }
      return null;
    };
    let y = slide(true);
    if (y === null) y = slide(false);
    if (y === null) y = y0;
    placed.push({ x, y, w, h });
    Object.assign(tag.style, { left: `${x}px`, top: `${y}px` });
  }

  drawMarks(view) {
    if (!view.marks) return;
    view.marks.replaceChildren();
    view.tags.replaceChildren();
    const d = (p) => [p[1] + 0.5, (view.flip ? view.rows - 1 - p[0] : p[0]) + 0.5];
    let placed = null; // the tags placed so far, after the view's letters (which they avoid too)
    for (const m of this.shown(view)) {
      const sel = m.id === this.selected;
      const color = sel ? "#ffd166" : "#4cc9f0";
      const g = svgEl("g", { class: "hf-mark", "data-id": m.id, "data-kind": m.kind }, view.marks);
      const line = { stroke: color, "stroke-width": sel ? 2 : 1.5, fill: "none", "vector-effect": "non-scaling-stroke" };
      const pts = m.points.map(d);
      if (m.kind === "length" || m.kind === "angle") {
        svgEl("polyline", { ...line, points: pts.map((p) => p.join(",")).join(" ") }, g);
      } else if (m.kind === "rectangle" || m.kind === "ellipse") {
        const [x0, x1] = [Math.min(pts[0][0], pts[1][0]), Math.max(pts[0][0], pts[1][0])];
        const [y0, y1] = [Math.min(pts[0][1], pts[1][1]), Math.max(pts[0][1], pts[1][1])];
        if (m.kind === "rectangle") svgEl("rect", { ...line, x: x0, y: y0, width: x1 - x0, height: y1 - y0 }, g);
        else svgEl("ellipse", { ...line, cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, rx: (x1 - x0) / 2, ry: (y1 - y0) / 2 }, g);
      }
      for (const [x, y] of pts) {
        // A zero-length line with a round cap: a dot of the same size on screen whatever the zoom.
        svgEl("line", { x1: x, y1: y, x2: x, y2: y, stroke: color, "stroke-width": m.kind === "point" ? 7 : 6,
          "stroke-linecap": "round", "vector-effect": "non-scaling-stroke" }, g);
      }
      const tag = el("span", "hf-tag", view.tags);
      tag.textContent = (m.label ? `${m.label}: ` : "") + this.describe(m, view, true);
      tag.dataset.id = m.id;
      if (sel) tag.classList.add("hf-selected");
      if (!placed) {
        const r = view.stage.getBoundingClientRect();
        placed = [...view.stage.querySelectorAll(".hf-letter")].map((letter) => {
          const b = letter.getBoundingClientRect();
          return { x: b.left - r.left, y: b.top - r.top, w: b.width, h: b.height };
        });
      }
      this.placeTag(view, tag, this.toScreen(view, m.points[m.points.length - 1]), placed);
    }
  }

  deleteMeasurement(id) {
    this.measurements = this.measurements.filter((m) => m.id !== id);
    if (this.selected === id) this.selected = null;
    this.measured();
  }

  measured() {
    // A measurement was added, moved or deleted: draw, list, and tell the page.
    for (const view of this.views) this.drawMarks(view);
    this.showList();
    this.send();
  }

  showList() {
    this.list.replaceChildren();
    if (!this.measurements.length) return;
    const table = el("table", "hf-table", this.list);
    const head = el("tr", "", el("thead", "", table));
    for (const t of ["Measurement", "Label", "View", "Slice", "Values", ""]) el("th", "", head).textContent = t;
    const body = el("tbody", "", table);
    const names = measurementNames(this.measurements);
    this.measurements.forEach((m, n) => {
      const view = this.views[m.axis];
      const tr = el("tr", m.id === this.selected ? "hf-selected" : "", body);
      tr.dataset.id = m.id;
      el("td", "", tr).textContent = names[n];
      const label = el("input", "hf-label-input", el("td", "", tr));
      Object.assign(label, { type: "text", value: m.label || "", maxLength: 80, placeholder: "name it" });
      label.setAttribute("aria-label", `Label of ${names[n]}`);
      label.addEventListener("click", (e) => e.stopPropagation());
      label.addEventListener("change", () => {
        m.label = label.value.slice(0, 80);
        this.measured();
      });
      el("td", "", tr).textContent = view.name;
      el("td", "", tr).textContent = String(m.index + 1);
      el("td", "hf-values", tr).textContent = this.describe(m, view);
      const del = el("button", "hf-button hf-delete", el("td", "", tr));
      del.type = "button";
      del.textContent = "Delete";
      del.setAttribute("aria-label", `Delete ${names[n]}`);
      del.addEventListener("click", (e) => {
        e.stopPropagation();
        this.deleteMeasurement(m.id);
      });
      tr.addEventListener("click", () => {
        // Selecting one goes to its slice.
        this.selected = m.id;
        if (this.point[m.axis] !== m.index) this.setSlice(view, m.index);
        this.measured();
      });
    });
  }

  // ---- talking to the page ----

  wants(labels = false) {
    const out = [];
    const held = labels
      ? (axis, index) => LABELS.has(`${this.overlay.key}|${axis}|${index}`)
      : (axis, index) => CACHE.has(cacheKey(axis, index, this.h.render[axis]));
    const add = (axis, index) => {
      const view = this.views[axis];
      if (index < 0 || index >= view.n) return;
      if (held(axis, index)) return;
      if (!out.some(([a, i]) => a === axis && i === index)) out.push([axis, index]);
    };
    if (labels && !this.overlay) return out;
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
    const held = (axis, index) => CACHE.has(cacheKey(axis, index, this.h.render[axis]))
      && (!this.overlay || LABELS.has(`${this.overlay.key}|${axis}|${index}`));
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
      const lwant = this.wants(true);
      this.lastWant = JSON.stringify([want, lwant]);
      this.seq += 1;
      this.setStateValue("view", {
        seq: this.seq, epoch: this.epoch, vol: this.volume, edits: this.edits.slice(), point: this.point.slice(),
        center: this.center, width: this.width, want, lwant, mrev: this.mrev, selected: this.selected,
        measurements: this.measurements.filter((m) => m !== (this.placing && this.placing.m))
          .map(({ id, kind, axis, index, points, label }) => ({ id, kind, axis, index, points, label })),
        ui: { ...this.ui },
      });
    }, wait);
  }

  requestMissing() {
    // After planes arrive: ask for the ones still missing around the crosshair, once.
    const want = this.wants();
    const lwant = this.wants(true);
    if ((want.length || lwant.length) && JSON.stringify([want, lwant]) !== this.lastWant) this.send();
  }
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  const host = parentElement.querySelector(".hf-root") || parentElement;
  if (!host.__viewer) host.__viewer = new Viewer(host);
  if (data && data.byteLength) host.__viewer.receive(data, setStateValue);
}
export { windowValue, rint, regionStats, angleDeg, wheelPixels, decimal };
