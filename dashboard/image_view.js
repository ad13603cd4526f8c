// Hounsfield's view of 2-D images: projections, loops and gallery images, painted in the browser.
//
// Python sends a JSON header and the frames once per series (grey values zlib-compressed, colour as
// PNG); they stay in a cache that outlives reruns and remounts. Zoom (wheel, toward the pointer),
// pan (drag, or the middle button), window/level (drag in that mode, or the right button; grey
// images only), length measurements (mm when the spacing is known, else pixels, as the header says),
// and for loops a frame slider with play, pause and loop at the acquisition's own rate.
// Every paint leaves its frame and time in the stage's data attributes and in window.__hfImagePaints
// (the last 600), so that tests can check what was painted and when.

const CACHE = new Map(); // `${vol}|${frame}` -> {rows, cols, values?, bitmap?}
const CACHE_MAX = 400;

function rint(y) {
  const r = Math.round(y);
  return r - y === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function linear(x, c, w) {
  // DICOM PS3.3 C.11.2.1.2.1 LINEAR, as core.windowing.window computes it.
  const lo = c - 0.5 - (w - 1) / 2;
  const hi = c - 0.5 + (w - 1) / 2;
  if (w <= 1) return x > hi ? 255 : 0;
  if (x <= lo) return 0;
  if (x > hi) return 255;
  return rint(Math.min(255, Math.max(0, ((x - (c - 0.5)) / (w - 1) + 0.5) * 255)));
}

function num(x) {
  return Math.abs(x) >= 100 ? String(Math.round(x)) : String(Number(x.toPrecision(3)));
}

async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function decodeFrame(h, meta, bytes) {
  if (meta.png) {
    const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
    return { rows: meta.rows, cols: meta.cols, bitmap };
  }
  const raw = await inflate(bytes);
  const buf = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
  const values = h.dtype === "u1" ? new Uint8Array(buf) : h.dtype === "i2" ? new Int16Array(buf) : new Float32Array(buf);
  return { rows: meta.rows, cols: meta.cols, values };
}

function el(tag, cls, parent, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}

class ImageView {
  constructor(host) {
    this.host = host;
    this.vol = null;
    this.needs = 0;
    this.playing = false;
    this.measures = [];
    window.__hfImagePaints = window.__hfImagePaints || [];
  }

  async receive(bytes, setStateValue) {
    this.setStateValue = setStateValue;
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const hlen = dv.getUint32(0, true);
    const h = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + hlen)));
    const base = 4 + hlen;
    const fresh = h.vol !== this.vol;
    this.h = h;
    if (fresh) {
      this.vol = h.vol;
      this.frame = 0;
      this.measures = [];
      this.build(h);
      this.reset();
    }
    const pending = h.frames.map(async (meta) => {
      const key = `${h.vol}|${meta.index}`;
      if (CACHE.has(key)) return;
      const entry = await decodeFrame(h, meta, bytes.subarray(base + meta.offset, base + meta.offset + meta.length));
      CACHE.set(key, entry);
    });
    await Promise.all(pending);
    // Other series' frames go first, oldest first; this one's stay (Python bounds their size).
    for (const key of [...CACHE.keys()]) {
      if (CACHE.size <= CACHE_MAX) break;
      if (!key.startsWith(`${h.vol}|`)) CACHE.delete(key);
    }
    const missing = [];
    for (let f = 0; f < h.n; f++) if (!CACHE.has(`${h.vol}|${f}`)) missing.push(f);
    this.root.dataset.ready = missing.length ? "0" : "1";
    if (missing.length && !h.frames.length) {
      // The cache is empty (a reload): ask Python for the frames again.
      this.needs += 1;
      this.setStateValue("need", { vol: h.vol, n: this.needs });
    }
    this.paint();
  }

  build(h) {
    this.host.innerHTML = "";
    const root = el("div", "hf-img", this.host);
    this.root = root;
    const bar = el("div", "hf-img-bar", root);
    const tool = (name, label, enabled = true) => {
      if (!enabled) return null;
      const b = el("button", "hf-img-tool", bar, label);
      b.type = "button";
      b.dataset.tool = name;
      b.addEventListener("click", () => this.setTool(name));
      return b;
    };
    this.tools = [tool("pan", "Pan"), tool("window", "Window/level", !h.colour), tool("measure", "Measure")].filter(
      (b) => b,
    );
    const reset = el("button", "hf-img-tool", bar, "Reset view");
    reset.type = "button";
    reset.dataset.action = "reset";
    reset.addEventListener("click", () => this.reset());
    const clear = el("button", "hf-img-tool", bar, "Clear measurements");
    clear.type = "button";
    clear.dataset.action = "clear";
    clear.addEventListener("click", () => {
      this.measures = [];
      this.paint();
    });
    this.readout = el("span", "hf-img-readout", bar);
    this.readout.title = "Zoom: screen pixels per pixel of the image (100% is one for one)";
    if (h.n > 1) this.buildLoop(h, root);
    const stage = el("div", "hf-img-stage", root);
    this.stage = stage;
    stage.tabIndex = 0; // arrows step frames, space plays and pauses, 0 resets the view
    stage.setAttribute("aria-label", h.n > 1 ? "Loop view" : "Image view");
    stage.addEventListener("keydown", (e) => this.key(e));
    this.canvas = el("canvas", "hf-img-canvas", stage);
    this.info = el("div", "hf-img-info", stage);
    this.note = el("div", "hf-img-note", root, h.note);
    this.setTool(h.colour ? "pan" : "window");
    this.bindPointer();
    new ResizeObserver(() => this.paint()).observe(stage);
  }

  buildLoop(h, root) {
    const row = el("div", "hf-img-loop", root);
    this.play = el("button", "hf-img-tool", row, "Play");
    this.play.type = "button";
    this.play.dataset.action = "play";
    this.play.addEventListener("click", () => (this.playing ? this.pause() : this.start()));
    const label = el("label", "hf-img-check", row);
    this.loopBox = el("input", null, label);
    this.loopBox.type = "checkbox";
    this.loopBox.checked = true;
    label.appendChild(document.createTextNode(" Loop"));
    this.slider = el("input", "hf-img-slider", row);
    this.slider.type = "range";
    this.slider.min = "1";
    this.slider.max = String(h.n);
    this.slider.value = "1";
    this.slider.setAttribute("aria-label", "Frame");
    this.slider.addEventListener("input", () => {
      this.pause();
      this.frame = Number(this.slider.value) - 1;
      this.paint();
    });
    this.frameText = el("span", "hf-img-frame", row);
    el("span", "hf-img-rate", row, `· ${h.rate_text}`);
  }

  key(e) {
    const h = this.h;
    if (e.key === "0") this.reset();
    else if (h.n > 1 && (e.key === "ArrowRight" || e.key === "ArrowLeft")) {
      this.pause();
      this.frame = (this.frame + (e.key === "ArrowRight" ? 1 : h.n - 1)) % h.n;
      this.paint();
    } else if (h.n > 1 && e.key === " ") this.playing ? this.pause() : this.start();
    else return;
    e.preventDefault();
  }

  start() {
    if (this.root.dataset.ready !== "1") return;
    this.playing = true;
    this.play.textContent = "Pause";
    this.root.dataset.playing = "1";
    const ms = this.h.frame_ms;
    const first = this.frame >= this.h.n - 1 && !this.loopBox.checked ? 0 : this.frame;
    const t0 = performance.now() - first * ms;
    const tick = (now) => {
      if (!this.playing) return;
      let f = Math.floor((now - t0) / ms);
      if (f >= this.h.n) {
        if (!this.loopBox.checked) {
          this.frame = this.h.n - 1;
          this.paint();
          this.pause();
          return;
        }
        f %= this.h.n;
      }
      if (f !== this.frame) {
        this.frame = f;
        this.paint();
      }
      this.raf = requestAnimationFrame(tick);
    };
    this.raf = requestAnimationFrame(tick);
  }

  pause() {
    this.playing = false;
    if (this.raf) cancelAnimationFrame(this.raf);
    if (this.play) this.play.textContent = "Play";
    this.root.dataset.playing = "0";
  }

  setTool(name) {
    this.tool = name;
    for (const b of this.tools) b.classList.toggle("hf-img-active", b.dataset.tool === name);
    this.root.dataset.tool = name;
  }

  reset() {
    const h = this.h;
    this.zoom = 1;
    this.panX = 0;
    this.panY = 0;
    this.center = h.center;
    this.width = h.width;
    this.useLut = !!h.voi;
    this.paint();
  }

  // -- geometry: the image fits the stage at zoom 1; pan in stage pixels -----------------------

  fit() {
    const h = this.h;
    const W = this.stage.clientWidth;
    const aspect = (h.rows * h.row_mm) / (h.cols * h.col_mm);
    const H = Math.max(200, Math.min(Math.round(W * aspect), Math.round(window.innerHeight * 0.72)));
    const base = Math.min(W / (h.cols * h.col_mm), H / (h.rows * h.row_mm));
    return { W, H, sx: base * h.col_mm * this.zoom, sy: base * h.row_mm * this.zoom };
  }

  toImage(px, py) {
    const { W, H, sx, sy } = this.fit();
    const h = this.h;
    const x0 = (W - h.cols * sx) / 2 + this.panX;
    const y0 = (H - h.rows * sy) / 2 + this.panY;
    return [(px - x0) / sx, (py - y0) / sy];
  }

  bindPointer() {
    const s = this.stage;
    s.addEventListener("contextmenu", (e) => e.preventDefault());
    s.addEventListener(
      "wheel",
      (e) => {
        e.preventDefault();
        const r = s.getBoundingClientRect();
        const [ix, iy] = this.toImage(e.clientX - r.left, e.clientY - r.top);
        const factor = Math.exp(-e.deltaY * 0.0015);
        this.zoom = Math.min(64, Math.max(0.1, this.zoom * factor));
        // Keep the image point under the pointer where it was.
        const [jx, jy] = this.toImage(e.clientX - r.left, e.clientY - r.top);
        const { sx, sy } = this.fit();
        this.panX += (jx - ix) * sx;
        this.panY += (jy - iy) * sy;
        this.paint();
      },
      { passive: false },
    );
    s.addEventListener("pointerdown", (e) => {
      s.focus();
      const r = s.getBoundingClientRect();
      const mode = e.button === 1 ? "pan" : e.button === 2 && !this.h.colour ? "window" : this.tool;
      const start = { x: e.clientX, y: e.clientY, panX: this.panX, panY: this.panY, c: this.center, w: this.width };
      const a = this.toImage(e.clientX - r.left, e.clientY - r.top);
      let line = null;
      if (mode === "measure") {
        line = { a, b: a };
        this.measures.push(line);
      }
      s.setPointerCapture(e.pointerId);
      const move = (ev) => {
        const dx = ev.clientX - start.x;
        const dy = ev.clientY - start.y;
        if (mode === "pan") {
          this.panX = start.panX + dx;
          this.panY = start.panY + dy;
        } else if (mode === "window") {
          const step = Math.max(1, (this.h.range[1] - this.h.range[0]) / 500);
          this.useLut = false;
          this.width = Math.max(1, Math.round(start.w + dx * step));
          this.center = Math.round(start.c - dy * step);
        } else if (line) {
          line.b = this.toImage(ev.clientX - r.left, ev.clientY - r.top);
        }
        this.paint();
      };
      const up = () => {
        s.removeEventListener("pointermove", move);
        s.removeEventListener("pointerup", up);
        s.removeEventListener("pointercancel", up);
        if (line && Math.hypot(line.b[0] - line.a[0], line.b[1] - line.a[1]) < 0.5) this.measures.pop();
        this.paint();
      };
      s.addEventListener("pointermove", move);
      s.addEventListener("pointerup", up);
      s.addEventListener("pointercancel", up);
    });
  }

  // -- painting ------------------------------------------------------------------------------

  lut() {
    // One grey level per value for u1/i2 frames: the file's VOI LUT or the linear window, inverted
    // for MONOCHROME1.
    const h = this.h;
    const key = `${this.useLut}|${this.center}|${this.width}`;
    if (key === this.lutKey) return this.lutTable;
    const lo = h.dtype === "u1" ? 0 : -32768;
    const n = h.dtype === "u1" ? 256 : 65536;
    const table = new Uint8Array(n);
    for (let i = 0; i < n; i++) table[i] = this.grey(lo + i);
    this.lutKey = key;
    this.lutTable = table;
    return table;
  }

  grey(v) {
    const h = this.h;
    let y;
    if (this.useLut && h.voi) {
      const t = h.voi.table;
      y = t[Math.min(t.length - 1, Math.max(0, Math.round(v - h.voi.first)))];
    } else {
      y = linear(v, this.center, this.width);
    }
    return h.invert ? 255 - y : y;
  }

  frameImage(entry) {
    // Grey frames are windowed into one scratch canvas (a loop's frames keep only their values).
    if (entry.bitmap) return entry.bitmap;
    const key = `${this.frame}|${this.useLut}|${this.center}|${this.width}`;
    const s = this.scratch;
    if (s && s.entry === entry && s.key === key) return s.image;
    const n = entry.rows * entry.cols;
    if (!s || s.image.width !== entry.cols || s.image.height !== entry.rows) {
      this.scratch = { image: new OffscreenCanvas(entry.cols, entry.rows), pixels: new ImageData(entry.cols, entry.rows) };
    }
    const { image, pixels } = this.scratch;
    const out = new Uint32Array(pixels.data.buffer);
    const v = entry.values;
    if (this.h.dtype === "f4") {
      for (let i = 0; i < n; i++) {
        const g = this.grey(v[i]);
        out[i] = 0xff000000 | (g << 16) | (g << 8) | g;
      }
    } else {
      const table = this.lut();
      const off = this.h.dtype === "u1" ? 0 : 32768;
      for (let i = 0; i < n; i++) {
        const g = table[v[i] + off];
        out[i] = 0xff000000 | (g << 16) | (g << 8) | g;
      }
    }
    image.getContext("2d").putImageData(pixels, 0, 0);
    Object.assign(this.scratch, { entry, key });
    return image;
  }

  paint() {
    const h = this.h;
    if (!h || !this.stage) return;
    const entry = CACHE.get(`${h.vol}|${this.frame}`);
    const { W, H, sx, sy } = this.fit();
    const dpr = window.devicePixelRatio || 1;
    this.stage.style.height = `${H}px`;
    if (this.canvas.width !== Math.round(W * dpr) || this.canvas.height !== Math.round(H * dpr)) {
      this.canvas.width = Math.round(W * dpr);
      this.canvas.height = Math.round(H * dpr);
    }
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    if (this.slider) {
      this.slider.value = String(this.frame + 1);
      this.frameText.textContent = `Frame ${this.frame + 1} of ${h.n}`;
    }
    if (!entry) {
      this.info.textContent = "Loading…";
      return;
    }
    this.info.textContent = "";
    const x0 = (W - h.cols * sx) / 2 + this.panX;
    const y0 = (H - h.rows * sy) / 2 + this.panY;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.imageSmoothingEnabled = sx < 2;
    ctx.drawImage(this.frameImage(entry), x0, y0, h.cols * sx, h.rows * sy);
    this.drawMeasures(ctx, x0, y0, sx, sy);
    // The true display scale: screen pixels per pixel of the file (100% = one for one), not the zoom
    // factor over the fitted view (a small image fitted to the view is shown enlarged).
    const zoom = `Zoom ${Math.round((sx / h.scale) * 100)}%`;
    this.readout.textContent = h.colour
      ? zoom
      : `${zoom}  ·  ${
          this.useLut && h.voi
            ? "the file's VOI LUT"
            : `window width ${num(this.width)}, centre ${num(this.center)} ${h.unit}`
        }`;
    const now = performance.now();
    this.stage.dataset.frame = String(this.frame);
    this.stage.dataset.paintedAt = String(now);
    window.__hfImagePaints.push({ vol: h.vol, frame: this.frame, t: now });
    if (window.__hfImagePaints.length > 600) window.__hfImagePaints.shift();
  }

  drawMeasures(ctx, x0, y0, sx, sy) {
    const h = this.h;
    ctx.lineWidth = 2;
    ctx.font = "13px sans-serif";
    for (const m of this.measures) {
      const ax = x0 + m.a[0] * sx;
      const ay = y0 + m.a[1] * sy;
      const bx = x0 + m.b[0] * sx;
      const by = y0 + m.b[1] * sy;
      ctx.strokeStyle = "#ffd166";
      ctx.beginPath();
      ctx.moveTo(ax, ay);
      ctx.lineTo(bx, by);
      ctx.stroke();
      const text = this.lengthText(m);
      ctx.fillStyle = "#ffd166";
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 3;
      ctx.strokeText(text, bx + 6, by - 6);
      ctx.fillText(text, bx + 6, by - 6);
      ctx.lineWidth = 2;
    }
    this.root.dataset.measures = JSON.stringify(this.measures.map((m) => this.lengthText(m)));
  }

  lengthText(m) {
    // Image coordinates are display pixels; `scale` source pixels each.
    const h = this.h;
    const dx = (m.b[0] - m.a[0]) * h.scale;
    const dy = (m.b[1] - m.a[1]) * h.scale;
    if (h.mm) return `${Math.hypot(dx * h.src_col_mm, dy * h.src_row_mm).toFixed(1)} mm`;
    return `${Math.hypot(dx, dy).toFixed(1)} pixels`;
  }
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  const host = parentElement.querySelector(".hf-img-root") || parentElement;
  if (!host.__imageView) host.__imageView = new ImageView(host);
  if (data && data.byteLength) host.__imageView.receive(data, setStateValue);
}
export { linear };
