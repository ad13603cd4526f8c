// Hounsfield's 3D view: a lit triangle mesh drawn with WebGL, turned with the mouse.
//
// Python sends the surface as bytes: uint32 header length (little endian), a JSON header, then
// float32 vertices (patient mm, LPS) and uint16 or uint32 triangle indices, each block at an
// offset that is a multiple of 4. The vertices go to the GPU as they are: no JSON, no per-vertex
// objects. Normals are computed here. The camera is kept per series in this module, so it
// survives new surfaces, reruns and visits to other pages (the module outlives remounts).
// After the first frame that shows a surface, the root gets data-drawn="<surface id>"; data-camera
// says where the camera is (azimuth, elevation in radians, distance and target in mm).

const CAMERAS = new Map(); // series key -> {az, el, dist, target}
const FOV = (30 * Math.PI) / 180;

const VERTEX = `
attribute vec3 position;
attribute vec3 normal;
uniform mat4 mvp;
uniform mat4 view;
varying vec3 vNormal;
varying vec3 vPos;
void main() {
  vNormal = (view * vec4(normal, 0.0)).xyz;
  vPos = (view * vec4(position, 1.0)).xyz;
  gl_Position = mvp * vec4(position, 1.0);
}`;

const FRAGMENT = `
precision highp float;
uniform vec3 color;
varying vec3 vNormal;
varying vec3 vPos;
void main() {
  vec3 n = normalize(vNormal);
  vec3 v = normalize(-vPos);
  if (dot(n, v) < 0.0) n = -n;  // both sides lit: inside a cut surface too
  vec3 l = normalize(vec3(0.35, 0.55, 1.0));  // a light above and right of the viewer
  float diffuse = max(dot(n, l), 0.0);
  float specular = pow(max(dot(n, normalize(l + v)), 0.0), 40.0);
  gl_FragColor = vec4(color * (0.3 + 0.7 * diffuse) + vec3(0.18 * specular), 1.0);
}`;

function perspective(fovy, aspect, near, far) {
  const f = 1 / Math.tan(fovy / 2);
  const nf = 1 / (near - far);
  return [f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) * nf, -1, 0, 0, 2 * far * near * nf, 0];
}

function sub(a, b) { return [a[0] - b[0], a[1] - b[1], a[2] - b[2]]; }
function cross(a, b) { return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]; }
function dot(a, b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
function unit(a) { const n = Math.hypot(a[0], a[1], a[2]) || 1; return [a[0] / n, a[1] / n, a[2] / n]; }

function lookAt(eye, target, up) {
  const z = unit(sub(eye, target));
  const x = unit(cross(up, z));
  const y = cross(z, x);
  return [x[0], y[0], z[0], 0, x[1], y[1], z[1], 0, x[2], y[2], z[2], 0, -dot(x, eye), -dot(y, eye), -dot(z, eye), 1];
}

function multiply(a, b) {
  const out = new Array(16).fill(0);
  for (let c = 0; c < 4; c++) for (let r = 0; r < 4; r++) {
    let s = 0;
    for (let k = 0; k < 4; k++) s += a[k * 4 + r] * b[c * 4 + k];
    out[c * 4 + r] = s;
  }
  return out;
}

function vertexNormals(positions, indices) {
  // Area-weighted face normals summed at each vertex.
  const normals = new Float32Array(positions.length);
  for (let f = 0; f < indices.length; f += 3) {
    const a = indices[f] * 3, b = indices[f + 1] * 3, c = indices[f + 2] * 3;
    const ux = positions[b] - positions[a], uy = positions[b + 1] - positions[a + 1], uz = positions[b + 2] - positions[a + 2];
    const vx = positions[c] - positions[a], vy = positions[c + 1] - positions[a + 1], vz = positions[c + 2] - positions[a + 2];
    const nx = uy * vz - uz * vy, ny = uz * vx - ux * vz, nz = ux * vy - uy * vx;
    normals[a] += nx; normals[a + 1] += ny; normals[a + 2] += nz;
    normals[b] += nx; normals[b + 1] += ny; normals[b + 2] += nz;
    normals[c] += nx; normals[c + 1] += ny; normals[c + 2] += nz;
  }
  return normals; // normalised in the shader
}

function decode(bytes) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hlen = dv.getUint32(0, true);
  const h = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + hlen)));
  const copy = (offset, length) => bytes.slice(offset, offset + length).buffer; // aligned, own buffer
  const positions = new Float32Array(copy(h.vertices, h.nv * 12));
  const indices = h.index === "u2" ? new Uint16Array(copy(h.faces, h.nf * 6)) : new Uint32Array(copy(h.faces, h.nf * 12));
  return { h, positions, indices };
}

let software = null;
function softwareRendering() {
  // Without a GPU (SwiftShader, llvmpipe) antialiasing draws every pixel four times: 0.3 s more
  // per frame of a 150,000-triangle surface on a busy 2-core server. Asked once, on a scratch canvas.
  if (software === null) {
    const gl = document.createElement("canvas").getContext("webgl");
    const info = gl && gl.getExtension("WEBGL_debug_renderer_info");
    const name = gl ? String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER)) : "";
    software = /swiftshader|llvmpipe|softpipe|software/i.test(name);
    if (gl) gl.getExtension("WEBGL_lose_context")?.loseContext();
  }
  return software;
}

class View {
  constructor(root) {
    this.root = root;
    this.canvas = document.createElement("canvas");
    this.canvas.className = "hf-iso-canvas";
    this.help = document.createElement("div");
    this.help.className = "hf-iso-help";
    this.help.textContent = "Drag to turn · Shift-drag to move · Scroll to zoom · Double-click for the front view";
    this.triad = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    this.triad.setAttribute("class", "hf-iso-triad");
    this.triad.setAttribute("viewBox", "-40 -40 80 80");
    root.replaceChildren(this.canvas, this.help, this.triad);
    const opts = { antialias: !softwareRendering(), preserveDrawingBuffer: true };
    this.gl = this.canvas.getContext("webgl2", opts) || this.canvas.getContext("webgl", opts);
    if (!this.gl) {
      root.textContent = "This browser cannot draw 3D (WebGL is off). The surface can still be downloaded below.";
      return;
    }
    this.uint32 = !!(this.gl instanceof WebGL2RenderingContext || this.gl.getExtension("OES_element_index_uint"));
    this.program = this.link();
    this.buffers = { position: this.gl.createBuffer(), normal: this.gl.createBuffer(), index: this.gl.createBuffer() };
    this.count = 0;
    this.pending = 0;
    this.listen();
    new ResizeObserver(() => this.redraw()).observe(root);
  }

  link() {
    const gl = this.gl;
    const shader = (type, text) => {
      const s = gl.createShader(type);
      gl.shaderSource(s, text);
      gl.compileShader(s);
      return s;
    };
    const p = gl.createProgram();
    gl.attachShader(p, shader(gl.VERTEX_SHADER, VERTEX));
    gl.attachShader(p, shader(gl.FRAGMENT_SHADER, FRAGMENT));
    gl.linkProgram(p);
    return p;
  }

  receive(bytes) {
    if (!this.gl) return;
    const { h, positions, indices } = decode(bytes);
    this.root.style.height = `${h.height}px`;
    this.color = [1, 3, 5].map((i) => parseInt(h.color.slice(i, i + 2), 16) / 255);
    this.scene = h.scene;
    this.bounds = h.bounds; // [[xmin, ymin, zmin], [xmax, ymax, zmax]]
    if (!CAMERAS.has(h.scene)) CAMERAS.set(h.scene, this.home());
    if (h.id === this.id) { this.redraw(); return; } // the same surface: nothing to upload
    if (h.index === "u4" && !this.uint32) {
      this.root.textContent = "This browser cannot draw a surface this large. Lower the triangle budget.";
      return;
    }
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.buffers.position);
    gl.bufferData(gl.ARRAY_BUFFER, positions, gl.STATIC_DRAW);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.buffers.normal);
    gl.bufferData(gl.ARRAY_BUFFER, vertexNormals(positions, indices), gl.STATIC_DRAW);
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, this.buffers.index);
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, indices, gl.STATIC_DRAW);
    this.indexType = h.index === "u2" ? gl.UNSIGNED_SHORT : gl.UNSIGNED_INT;
    this.count = indices.length;
    this.id = h.id;
    this.redraw();
  }

  home() {
    // The front view, the volume's height (or width, on a narrow view) filling the view.
    const [lo, hi] = this.bounds;
    const target = [0, 1, 2].map((a) => (lo[a] + hi[a]) / 2);
    const half = [0, 1, 2].map((a) => Math.max(0.5, (hi[a] - lo[a]) / 2));
    const radius = Math.hypot(...half);
    const aspect = Math.max(0.5, this.canvas.clientWidth / Math.max(1, this.canvas.clientHeight));
    const dist = (1.08 * Math.max(half[2], half[0] / aspect)) / Math.tan(FOV / 2) + half[1];
    return { az: 0, el: 0.12, dist, target, radius };
  }

  camera() { return CAMERAS.get(this.scene); }

  redraw() {
    if (this.pending || !this.gl) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      this.draw();
      const cam = this.camera();
      if (cam) this.root.setAttribute("data-camera", [cam.az, cam.el, cam.dist, ...cam.target].map((v) => v.toFixed(3)).join(","));
      if (this.id !== undefined && this.root.getAttribute("data-drawn") !== this.id) {
        const id = this.id;
        requestAnimationFrame(() => this.root.setAttribute("data-drawn", id)); // after the frame is shown
      }
    });
  }

  draw() {
    const gl = this.gl;
    const cam = this.camera();
    if (!cam) return;
    const ratio = Math.min(window.devicePixelRatio || 1, 2);
    const w = Math.max(1, Math.round(this.canvas.clientWidth * ratio));
    const h = Math.max(1, Math.round(this.canvas.clientHeight * ratio));
    if (this.canvas.width !== w || this.canvas.height !== h) [this.canvas.width, this.canvas.height] = [w, h];
    gl.viewport(0, 0, w, h);
    gl.clearColor(0.055, 0.067, 0.09, 1);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    if (!this.count) return;
    // Patient LPS: the front view looks from anterior (-y) with superior (+z) up, the patient's
    // right on the left of the screen.
    const c = Math.cos(cam.el);
    const eye = [0, 1, 2].map((a) => cam.target[a] + cam.dist * [Math.sin(cam.az) * c, -Math.cos(cam.az) * c, Math.sin(cam.el)][a]);
    const view = lookAt(eye, cam.target, [0, 0, 1]);
    const near = Math.max(cam.dist - 2 * cam.radius, cam.dist / 100);
    const proj = perspective(FOV, w / h, near, cam.dist + 2 * cam.radius);
    gl.enable(gl.DEPTH_TEST);
    gl.useProgram(this.program);
    gl.uniformMatrix4fv(gl.getUniformLocation(this.program, "mvp"), false, new Float32Array(multiply(proj, view)));
    gl.uniformMatrix4fv(gl.getUniformLocation(this.program, "view"), false, new Float32Array(view));
    gl.uniform3fv(gl.getUniformLocation(this.program, "color"), this.color);
    for (const [name, buffer] of [["position", this.buffers.position], ["normal", this.buffers.normal]]) {
      const loc = gl.getAttribLocation(this.program, name);
      gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, 3, gl.FLOAT, false, 0, 0);
    }
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, this.buffers.index);
    gl.drawElements(gl.TRIANGLES, this.count, this.indexType, 0);
    this.drawTriad(view);
  }

  drawTriad(view) {
    // The patient's axes as the camera sees them: L(eft), P(osterior), S(uperior), LPS as DICOM.
    const axes = [["L", "#e06666"], ["P", "#6fbf73"], ["S", "#6fa8dc"]];
    const parts = axes.map(([letter, color], a) => {
      const x = view[a * 4] * 26, y = -view[a * 4 + 1] * 26; // the axis in eye space, y up
      return { letter, color, x, y, z: view[a * 4 + 2] };
    }).sort((p, q) => p.z - q.z); // farthest first
    this.triad.innerHTML = parts.map(({ letter, color, x, y }) =>
      `<line x1="0" y1="0" x2="${x.toFixed(1)}" y2="${y.toFixed(1)}" stroke="${color}" stroke-width="2.5"/>` +
      `<text x="${(x * 1.28).toFixed(1)}" y="${(y * 1.28 + 4).toFixed(1)}" fill="${color}">${letter}</text>`).join("");
  }

  listen() {
    const canvas = this.canvas;
    let last = null;
    canvas.addEventListener("pointerdown", (e) => {
      canvas.setPointerCapture(e.pointerId);
      last = { x: e.clientX, y: e.clientY, pan: e.shiftKey || e.button === 2 };
    });
    canvas.addEventListener("pointermove", (e) => {
      const cam = this.camera();
      if (!last || !cam) return;
      const dx = e.clientX - last.x, dy = e.clientY - last.y;
      last.x = e.clientX;
      last.y = e.clientY;
      if (last.pan) {
        const s = (2 * cam.dist * Math.tan(FOV / 2)) / Math.max(1, canvas.clientHeight);
        const right = [Math.cos(cam.az), Math.sin(cam.az), 0];
        const up = [-Math.sin(cam.el) * Math.sin(cam.az), Math.sin(cam.el) * Math.cos(cam.az), Math.cos(cam.el)];
        cam.target = cam.target.map((t, a) => t - s * (dx * right[a] - dy * up[a]));
      } else {
        cam.az -= dx * 0.008;
        cam.el = Math.max(-1.55, Math.min(1.55, cam.el + dy * 0.008));
      }
      this.redraw();
    });
    const stop = () => { last = null; };
    canvas.addEventListener("pointerup", stop);
    canvas.addEventListener("pointercancel", stop);
    canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    canvas.addEventListener("wheel", (e) => {
      const cam = this.camera();
      if (!cam) return;
      e.preventDefault();
      cam.dist = Math.max(cam.radius * 0.05, Math.min(cam.radius * 20, cam.dist * Math.exp(e.deltaY * 0.0015)));
      this.redraw();
    }, { passive: false });
    canvas.addEventListener("dblclick", () => {
      CAMERAS.set(this.scene, this.home());
      this.redraw();
    });
  }
}

export default function (component) {
  const { data, parentElement } = component;
  const root = parentElement.querySelector(".hf-iso") || parentElement;
  if (!root.__view) root.__view = new View(root);
  if (data && data.byteLength) root.__view.receive(data);
}
