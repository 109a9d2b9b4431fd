/* a0verify report: interactive 3-D view and slice scroller (plain ES2020, no network).
 *
 * Reads the JSON payload in <script id="a0v-data"> (see a0verify/report/explore.py) and uses the
 * vendored three.js bundle (global A0THREE). Coordinates are LPS millimetres throughout; the
 * slice panels follow the radiological convention (patient's right on the viewer's left).
 * When everything is drawn, document.body gets data-a0v-ready="1" (or data-a0v-error).
 */
(function () {
  'use strict';
  const dataEl = document.getElementById('a0v-data');
  if (!dataEl) return;
  const mark = (name) => { try { performance.mark('a0v-' + name); } catch (e) { /* old browsers */ } };
  mark('start');
  const D = JSON.parse(dataEl.textContent);
  const T = window.A0THREE;
  const $ = (id) => document.getElementById(id);
  const MAGENTA = '#e600e6';
  const ZONE_RGB = [0.2, 0.8, 0.2];

  // ------------------------------------------------------------------ helpers
  function fmt(v, n) { return (Math.round(v * 10 ** n) / 10 ** n).toFixed(n); }
  function pointText(p) {
    return 'LPS (' + p.map((v) => fmt(v, 1)).join(', ') + ') = RAS (' +
      [-p[0], -p[1], p[2]].map((v) => fmt(v, 1)).join(', ') + ') mm';
  }
  async function unpack(b64, Type) {
    const bin = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const stream = new Blob([bin]).stream().pipeThrough(new DecompressionStream('deflate'));
    return new Type(await new Response(stream).arrayBuffer());
  }
  const S = D.scale;
  function lutIndex(m) {
    const t = (m - S.vmin) / (S.vmax - S.vmin);
    return Math.max(0, Math.min(255, Math.round(t * 255)));
  }
  function colour(m) { // sRGB 0..1
    const i = 3 * lutIndex(m);
    return [S.lut[i] / 255, S.lut[i + 1] / 255, S.lut[i + 2] / 255];
  }
  function css(rgb) { return 'rgb(' + rgb.map((c) => Math.round(255 * c)).join(',') + ')'; }
  function toLinear(c) { return c <= 0.04045 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); }
  const AXIS_WORDS = [['right', 'left'], ['anterior', 'posterior'], ['inferior', 'superior']];
  function directionWords(v) {
    const n = Math.hypot(v[0], v[1], v[2]);
    if (!(n > 0)) return 'undefined';
    const u = v.map((x) => x / n);
    return [0, 1, 2].sort((a, b) => Math.abs(u[b]) - Math.abs(u[a]))
      .filter((i) => Math.abs(u[i]) >= 0.35).map((i) => AXIS_WORDS[i][u[i] > 0 ? 1 : 0]).join('-');
  }
  function legend(canvas) { // colour bar with ticks (mm)
    const ctx = canvas.getContext('2d');
    const w = canvas.width, h = canvas.height, bar = 14, pad = 10;
    ctx.clearRect(0, 0, w, h);
    for (let x = 0; x < w - 2 * pad; x++) {
      const m = S.vmin + (S.vmax - S.vmin) * x / (w - 2 * pad - 1);
      ctx.fillStyle = css(colour(m));
      ctx.fillRect(pad + x, 2, 1, bar);
    }
    ctx.strokeStyle = '#555';
    ctx.strokeRect(pad, 2, w - 2 * pad, bar);
    ctx.fillStyle = '#222';
    ctx.font = '11px sans-serif';
    ctx.textAlign = 'center';
    for (const t of S.ticks) {
      const x = pad + (w - 2 * pad) * (t - S.vmin) / (S.vmax - S.vmin);
      ctx.fillRect(x - 0.5, 2, 1, bar + 4);
      ctx.fillText(fmt(t, 0), x, bar + 16);
    }
  }

  // ------------------------------------------------------------------ mesh cut by a plane
  // Segments where the plane x[axis] = c cuts a triangle mesh; margin interpolated linearly.
  function cutMesh(mesh, axis, c) {
    const v = mesh.vertices, f = mesh.faces, m = mesh.margin, out = [];
    for (let t = 0; t < f.length; t += 3) {
      const ids = [f[t], f[t + 1], f[t + 2]];
      const d = ids.map((i) => (v[3 * i + axis] - c) || 1e-9);
      const pts = [];
      for (let e = 0; e < 3; e++) {
        const a = e, b = (e + 1) % 3;
        if ((d[a] > 0) !== (d[b] > 0)) {
          const s = d[a] / (d[a] - d[b]), ia = ids[a], ib = ids[b];
          pts.push([v[3 * ia] + s * (v[3 * ib] - v[3 * ia]), v[3 * ia + 1] + s * (v[3 * ib + 1] - v[3 * ia + 1]),
            v[3 * ia + 2] + s * (v[3 * ib + 2] - v[3 * ia + 2]), m[ia] + s * (m[ib] - m[ia])]);
        }
      }
      if (pts.length === 2) out.push(pts);
    }
    return out;
  }

  // ------------------------------------------------------------------ 3-D view
  function View3D(meshes, zone) {
    const box = $('a0v-3d');
    const tip = $('a0v-3d-tip');
    const info = $('a0v-3d-info');
    const renderer = new T.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    renderer.setPixelRatio(window.devicePixelRatio || 1);
    renderer.setClearColor(0xffffff, 1);
    box.insertBefore(renderer.domElement, box.firstChild);
    const scene = new T.Scene();
    const camera = new T.PerspectiveCamera(35, 1, 0.5, 5000);
    camera.up.set(0, 0, 1); // superior up
    scene.add(camera);
    scene.add(new T.HemisphereLight(0xffffff, 0x8a8a8a, 1.6));
    const head = new T.DirectionalLight(0xffffff, 1.9); // a headlight: no dark side
    head.position.set(0.3, 0.6, 1);
    camera.add(head);
    const tumours = [];
    const all = new T.Box3();
    for (const mesh of meshes) {
      const g = new T.BufferGeometry();
      g.setAttribute('position', new T.BufferAttribute(mesh.vertices, 3));
      const col = new Float32Array(mesh.margin.length * 3);
      for (let i = 0; i < mesh.margin.length; i++) {
        const c = colour(mesh.margin[i]);
        col[3 * i] = toLinear(c[0]); col[3 * i + 1] = toLinear(c[1]); col[3 * i + 2] = toLinear(c[2]);
      }
      g.setAttribute('color', new T.BufferAttribute(col, 3));
      g.setIndex(new T.BufferAttribute(mesh.faces, 1));
      g.computeVertexNormals();
      g.computeBoundingBox();
      all.union(g.boundingBox);
      const obj = new T.Mesh(g, new T.MeshPhongMaterial({ vertexColors: true, shininess: 12, specular: 0x181818 }));
      obj.userData = mesh;
      scene.add(obj);
      tumours.push(obj);
    }
    let zoneObj = null;
    if (zone) {
      const g = new T.BufferGeometry();
      g.setAttribute('position', new T.BufferAttribute(zone.vertices, 3));
      g.setIndex(new T.BufferAttribute(zone.faces, 1));
      g.computeVertexNormals();
      g.computeBoundingBox();
      all.union(g.boundingBox);
      zoneObj = new T.Mesh(g, new T.MeshPhongMaterial({
        color: new T.Color().setRGB(...ZONE_RGB, 'srgb'), transparent: true, opacity: 0.2,
        depthWrite: false, side: T.DoubleSide, shininess: 5 }));
      zoneObj.renderOrder = 1;
      scene.add(zoneObj);
    }
    const th = D.thinnest;
    const size = new T.Vector3();
    all.getSize(size);
    const extent = Math.max(size.x, size.y, size.z, 10);
    const p0 = new T.Vector3(...th.lps);
    const centre = new T.Vector3(...th.lesion_centre_lps);
    let out = p0.clone().sub(centre);
    if (out.length() < 1e-6) out = new T.Vector3(0, -1, 0);
    out.normalize();
    const dot = new T.Mesh(new T.SphereGeometry(Math.max(0.6, 0.018 * extent), 24, 16),
      new T.MeshBasicMaterial({ color: MAGENTA }));
    dot.position.copy(p0);
    scene.add(dot);
    scene.add(new T.ArrowHelper(out, p0.clone().addScaledVector(out, 0.5), Math.max(6, 0.3 * extent),
      0xe600e6, Math.max(2, 0.06 * extent), Math.max(1.2, 0.035 * extent)));
    const pin = new T.Mesh(new T.SphereGeometry(Math.max(0.5, 0.014 * extent), 16, 12),
      new T.MeshBasicMaterial({ color: 0x111111 }));
    pin.visible = false;
    scene.add(pin);
    const controls = new T.OrbitControls(camera, renderer.domElement);
    controls.target.copy(centre);
    controls.enableDamping = false;
    controls.zoomSpeed = 1.2;
    const words = $('a0v-3d-dir');
    function render() {
      renderer.render(scene, camera);
      const d = camera.position.clone().sub(controls.target);
      words.textContent = 'seen from ' + directionWords([d.x, d.y, d.z]);
    }
    controls.addEventListener('change', render);
    function look(dir) {
      const d = new T.Vector3(...dir).normalize();
      camera.up.set(0, 0, 1);
      if (Math.abs(d.z) > 0.9) camera.up.set(0, -1, 0); // from above/below: anterior up
      controls.target.copy(centre);
      camera.position.copy(centre).addScaledVector(d, 2.0 * extent);
      camera.lookAt(centre);
      controls.update();
      render();
    }
    function resize() {
      const w = box.clientWidth, h = box.clientHeight;
      renderer.setSize(w, h, false);
      renderer.domElement.style.width = w + 'px';
      renderer.domElement.style.height = h + 'px';
      camera.aspect = w / Math.max(h, 1);
      camera.updateProjectionMatrix();
      render();
    }
    new ResizeObserver(resize).observe(box);
    // picking: margin at the surface point under the pointer (barycentric on the face)
    const ray = new T.Raycaster();
    function pick(ev) {
      const r = renderer.domElement.getBoundingClientRect();
      const ndc = new T.Vector2(((ev.clientX - r.left) / r.width) * 2 - 1, -((ev.clientY - r.top) / r.height) * 2 + 1);
      ray.setFromCamera(ndc, camera);
      const hit = ray.intersectObjects(tumours, false)[0];
      if (!hit || !hit.face) return null;
      const mesh = hit.object.userData, v = mesh.vertices, ids = [hit.face.a, hit.face.b, hit.face.c];
      const P = ids.map((i) => new T.Vector3(v[3 * i], v[3 * i + 1], v[3 * i + 2]));
      const w = barycentric(hit.point, P[0], P[1], P[2]);
      const margin = w[0] * mesh.margin[ids[0]] + w[1] * mesh.margin[ids[1]] + w[2] * mesh.margin[ids[2]];
      return { point: [hit.point.x, hit.point.y, hit.point.z], margin, lesion: mesh.id, x: ev.clientX - r.left, y: ev.clientY - r.top };
    }
    function barycentric(p, a, b, c) {
      const v0 = b.clone().sub(a), v1 = c.clone().sub(a), v2 = p.clone().sub(a);
      const d00 = v0.dot(v0), d01 = v0.dot(v1), d11 = v1.dot(v1), d20 = v2.dot(v0), d21 = v2.dot(v1);
      const den = d00 * d11 - d01 * d01 || 1e-12;
      const y = (d11 * d20 - d01 * d21) / den, z = (d00 * d21 - d01 * d20) / den;
      return [1 - y - z, y, z];
    }
    function describe(h) {
      const t = fmt(D.threshold_mm, 0), t2 = D.second_threshold_mm;
      const level = h.margin < 0 ? 'tumour outside the ablation zone'
        : h.margin < D.threshold_mm ? 'below the ' + t + ' mm threshold'
          : (t2 != null && h.margin < t2) ? 'between ' + t + ' and ' + fmt(t2, 0) + ' mm (the second threshold)'
            : 'at least ' + (t2 != null ? fmt(t2, 0) : t) + ' mm';
      return 'margin ' + fmt(h.margin, 1) + ' mm (' + level + '), lesion ' + h.lesion;
    }
    let pending = null;
    renderer.domElement.addEventListener('pointermove', (ev) => {
      pending = ev;
      requestAnimationFrame(() => {
        if (!pending) return;
        const h = pick(pending);
        pending = null;
        if (!h) { tip.style.display = 'none'; return; }
        tip.textContent = fmt(h.margin, 1) + ' mm';
        tip.style.left = (h.x + 14) + 'px';
        tip.style.top = (h.y + 10) + 'px';
        tip.style.display = 'block';
      });
    });
    renderer.domElement.addEventListener('pointerleave', () => { tip.style.display = 'none'; });
    let down = null;
    renderer.domElement.addEventListener('pointerdown', (ev) => { down = [ev.clientX, ev.clientY]; });
    renderer.domElement.addEventListener('pointerup', (ev) => {
      if (!down || Math.hypot(ev.clientX - down[0], ev.clientY - down[1]) > 4) return; // a drag
      const h = pick(ev);
      if (!h) return;
      pin.position.set(...h.point);
      pin.visible = true;
      render();
      info.textContent = 'Picked: ' + describe(h) + ', at ' + pointText(h.point) + '.';
      box.dataset.picked = fmt(h.margin, 2);
      if (view.onpick) view.onpick(h.point);
    });
    const view = {
      look, render, onpick: null,
      thinnest() { look([out.x, out.y, out.z]); },
      toggleZone() { if (zoneObj) { zoneObj.visible = !zoneObj.visible; render(); } },
      canvas: renderer.domElement,
    };
    for (const b of document.querySelectorAll('#a0v-3d-buttons button')) {
      b.addEventListener('click', () => {
        const k = b.dataset.view;
        if (k === 'thinnest') view.thinnest();
        else if (k === 'opposite') look([-out.x, -out.y, -out.z]);
        else if (k === 'zone') view.toggleZone();
        else look(JSON.parse(k));
      });
    }
    resize();
    view.thinnest();
    info.textContent = 'Thinnest margin ' + fmt(th.margin_mm, 1) + ' mm (lesion ' + th.lesion + ') at ' +
      pointText(th.lps) + ' (magenta). Drag to rotate, scroll to zoom, right-drag to pan; hover to read the margin, click to pin a point and move the slices there.';
    return view;
  }

  // ------------------------------------------------------------------ slice scroller
  // Planes: [name, fixed LPS axis, horizontal axis, vertical axis, vertical increases downward]
  const PLANES = [['axial', 2, 0, 1, true], ['coronal', 1, 0, 2, false], ['sagittal', 0, 1, 2, false]];
  const EDGES = { axial: ['R', 'L', 'A', 'P'], coronal: ['R', 'L', 'S', 'I'], sagittal: ['A', 'P', 'S', 'I'] };

  function Slices(vol, ct, labels, meshes) {
    const [nz, ny, nx] = vol.shape, n = [nx, ny, nz];
    const o = vol.origin_lps, s = vol.spacing_mm;
    const P = D.thinnest.lps.slice();
    const panels = [];
    function index(axis, mm) { return Math.max(0, Math.min(n[axis] - 1, Math.round((mm - o[axis]) / s[axis]))); }
    function at(i, j, k) { return (k * ny + j) * nx + i; }
    for (const [name, fixed, h, v, down] of PLANES) {
      const root = $('a0v-slice-' + name);
      const canvas = root.querySelector('canvas');
      const slider = root.querySelector('input');
      const label = root.querySelector('.a0v-slice-label');
      slider.min = 0; slider.max = n[fixed] - 1; slider.step = 1;
      const img = document.createElement('canvas');
      img.width = n[h]; img.height = n[v];
      const pnl = { name, fixed, h, v, down, canvas, slider, label, img, edges: EDGES[name] };
      panels.push(pnl);
      slider.addEventListener('input', () => { P[fixed] = o[fixed] + s[fixed] * Number(slider.value); draw(); });
      canvas.addEventListener('wheel', (ev) => {
        ev.preventDefault();
        const k = index(fixed, P[fixed]) + (ev.deltaY > 0 ? 1 : -1);
        P[fixed] = o[fixed] + s[fixed] * Math.max(0, Math.min(n[fixed] - 1, k));
        draw();
      }, { passive: false });
      canvas.addEventListener('click', (ev) => { const q = toLps(pnl, ev); P[h] = q[h]; P[v] = q[v]; draw(); });
      canvas.addEventListener('pointermove', (ev) => hover(pnl, ev));
    }
    function toLps(p, ev) {
      const r = p.canvas.getBoundingClientRect();
      const fx = (ev.clientX - r.left) / r.width, fy = (ev.clientY - r.top) / r.height;
      const q = P.slice();
      q[p.h] = o[p.h] - 0.5 * s[p.h] + fx * n[p.h] * s[p.h];
      const fv = p.down ? fy : 1 - fy;
      q[p.v] = o[p.v] - 0.5 * s[p.v] + fv * n[p.v] * s[p.v];
      return q;
    }
    function hover(p, ev) {
      const q = toLps(p, ev);
      const i = index(0, q[0]), j = index(1, q[1]), k = index(2, q[2]);
      const lab = labels[at(i, j, k)];
      const what = [];
      if (lab & 1) what.push('tumour');
      if (lab & 2) what.push('ablation zone');
      if ((lab & 1) && !(lab & 2)) what.push('NOT ablated');
      if (lab & 4) what.push('within ' + fmt(D.threshold_mm, 0) + ' mm of the tumour, not ablated');
      let hu = '';
      if (ct) {
        const c = ct[at(i, j, k)], w = vol.window_hu;
        hu = c === 0 ? ', CT < ' + w[0] + ' HU' : c === 255 ? ', CT > ' + w[1] + ' HU' : ', CT ' + fmt(w[0] + c * (w[1] - w[0]) / 255, 0) + ' HU';
      }
      $('a0v-slice-hover').textContent = pointText(q) + hu + (what.length ? ' — ' + what.join(', ') : '');
    }
    function drawPanel(p) {
      const k = index(p.fixed, P[p.fixed]);
      p.slider.value = k;
      const W = n[p.h], H = n[p.v];
      const ictx = p.img.getContext('2d');
      const im = ictx.createImageData(W, H);
      for (let y = 0; y < H; y++) {
        const vv = p.down ? y : H - 1 - y;
        for (let x = 0; x < W; x++) {
          const ijk = [0, 0, 0];
          ijk[p.fixed] = k; ijk[p.h] = x; ijk[p.v] = vv;
          const idx = at(ijk[0], ijk[1], ijk[2]);
          let g = ct ? ct[idx] : 0;
          let r = g, gg = g, b = g;
          const lab = labels[idx];
          if (lab & 2) { r = 0.82 * r + 0.18 * 51; gg = 0.82 * gg + 0.18 * 204; b = 0.82 * b + 0.18 * 51; }
          if ((lab & 1) && !(lab & 2)) { r = 0.2 * r + 0.8 * 200; gg *= 0.2; b *= 0.2; }
          if (lab & 4) { const st = ((x + y) % 4) < 2; r = 0.55 * r + 0.45 * 230; gg *= st ? 0.35 : 0.7; b *= st ? 0.35 : 0.7; }
          const o4 = 4 * (y * W + x);
          im.data[o4] = r; im.data[o4 + 1] = gg; im.data[o4 + 2] = b; im.data[o4 + 3] = 255;
        }
      }
      ictx.putImageData(im, 0, 0);
      const c = p.canvas, ctx = c.getContext('2d');
      const cw = c.clientWidth || 300;
      const ch = Math.round(cw * (H * s[p.v]) / (W * s[p.h]));
      const dpr = window.devicePixelRatio || 1;
      if (c.width !== Math.round(cw * dpr) || c.height !== Math.round(ch * dpr)) {
        c.width = Math.round(cw * dpr); c.height = Math.round(ch * dpr); c.style.height = ch + 'px';
      }
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(p.img, 0, 0, c.width, c.height);
      const sx = c.width / (W * s[p.h]), sy = c.height / (H * s[p.v]);
      const X = (mm) => (mm - (o[p.h] - 0.5 * s[p.h])) * sx;
      const Y = (mm) => p.down ? (mm - (o[p.v] - 0.5 * s[p.v])) * sy : c.height - (mm - (o[p.v] - 0.5 * s[p.v])) * sy;
      // zone boundary: edges between zone and non-zone voxels of this slice
      ctx.strokeStyle = 'rgb(51,204,51)';
      ctx.lineWidth = 1.6 * dpr;
      ctx.beginPath();
      const zoneAt = (a, b) => { const ijk = [0, 0, 0]; ijk[p.fixed] = k; ijk[p.h] = a; ijk[p.v] = b; return (labels[at(ijk[0], ijk[1], ijk[2])] & 2) !== 0; };
      for (let b = 0; b < H; b++) {
        for (let a = 0; a < W; a++) {
          const z = zoneAt(a, b);
          const hmm = o[p.h] + a * s[p.h], vmm = o[p.v] + b * s[p.v];
          if (a + 1 < W && zoneAt(a + 1, b) !== z) { const xe = X(hmm + 0.5 * s[p.h]); ctx.moveTo(xe, Y(vmm - 0.5 * s[p.v])); ctx.lineTo(xe, Y(vmm + 0.5 * s[p.v])); }
          if (b + 1 < H && zoneAt(a, b + 1) !== z) { const ye = Y(vmm + 0.5 * s[p.v]); ctx.moveTo(X(hmm - 0.5 * s[p.h]), ye); ctx.lineTo(X(hmm + 0.5 * s[p.h]), ye); }
        }
      }
      ctx.stroke();
      // tumour surface cut by this plane, coloured by its margin
      const plane = o[p.fixed] + k * s[p.fixed];
      ctx.lineWidth = 3 * dpr;
      ctx.lineCap = 'round';
      for (const mesh of meshes) {
        for (const seg of cutMesh(mesh, p.fixed, plane)) {
          ctx.strokeStyle = css(colour(0.5 * (seg[0][3] + seg[1][3])));
          ctx.beginPath();
          ctx.moveTo(X(seg[0][p.h]), Y(seg[0][p.v]));
          ctx.lineTo(X(seg[1][p.h]), Y(seg[1][p.v]));
          ctx.stroke();
        }
      }
      // current point and the thinnest point
      ctx.setLineDash([4 * dpr, 4 * dpr]);
      ctx.strokeStyle = 'rgba(255,230,0,0.8)';
      ctx.lineWidth = 1 * dpr;
      ctx.beginPath();
      ctx.moveTo(X(P[p.h]), 0); ctx.lineTo(X(P[p.h]), c.height);
      ctx.moveTo(0, Y(P[p.v])); ctx.lineTo(c.width, Y(P[p.v]));
      ctx.stroke();
      ctx.setLineDash([]);
      const tp = D.thinnest.lps;
      if (Math.abs(tp[p.fixed] - plane) <= 0.5 * s[p.fixed] + 1e-6) {
        ctx.strokeStyle = MAGENTA;
        ctx.lineWidth = 2.5 * dpr;
        ctx.beginPath();
        ctx.arc(X(tp[p.h]), Y(tp[p.v]), 9 * dpr, 0, 2 * Math.PI);
        ctx.stroke();
      }
      ctx.fillStyle = 'white';
      ctx.font = 'bold ' + 13 * dpr + 'px sans-serif';
      const [L, R, Tt, B] = p.edges;
      ctx.textAlign = 'left'; ctx.fillText(L, 4 * dpr, c.height / 2);
      ctx.textAlign = 'right'; ctx.fillText(R, c.width - 4 * dpr, c.height / 2);
      ctx.textAlign = 'center'; ctx.fillText(Tt, c.width / 2, 15 * dpr); ctx.fillText(B, c.width / 2, c.height - 5 * dpr);
      p.label.textContent = p.name + ': ' + 'xyz'[p.fixed] + ' = ' + fmt(plane, 1) + ' mm LPS (slice ' + (k + 1) + ' of ' + n[p.fixed] + ')';
    }
    function draw() { for (const p of panels) drawPanel(p); }
    draw();
    new ResizeObserver(draw).observe($('a0v-slices'));
    return {
      setPoint(q) { P[0] = q[0]; P[1] = q[1]; P[2] = q[2]; draw(); },
      thinnest() { this.setPoint(D.thinnest.lps); },
      point: P,
    };
  }

  // ------------------------------------------------------------------ start
  async function main() {
    // every array is inflated at once (the streams run concurrently)
    const meshes = await Promise.all(D.lesions.map(async (m) => ({
      id: m.id, vertices: await unpack(m.vertices, Float32Array), faces: await unpack(m.faces, Uint32Array),
      margin: await unpack(m.margin, Float32Array) })));
    const zoneP = D.zone ? Promise.all([unpack(D.zone.vertices, Float32Array), unpack(D.zone.faces, Uint32Array)]) : null;
    const volP = D.volume ? Promise.all([D.volume.ct ? unpack(D.volume.ct, Uint8Array) : null, unpack(D.volume.labels, Uint8Array)]) : null;
    const zz = zoneP ? await zoneP : null;
    const zone = zz ? { vertices: zz[0], faces: zz[1] } : null;
    const vv = volP ? await volP : null;
    mark('decoded');
    legend($('a0v-legend'));
    let slices = null;
    if (vv) {
      slices = Slices(D.volume, vv[0], vv[1], meshes);
      $('a0v-slices-thinnest').addEventListener('click', () => slices.thinnest());
    }
    mark('slices');
    if (!T) throw new Error('three.js bundle missing');
    const view = View3D(meshes, zone);
    if (slices) view.onpick = (q) => slices.setPoint(q);
    mark('3d');
    window.a0v = { view, slices, data: D };
    mark('ready');
    document.body.dataset.a0vReady = '1';
  }
  main().catch((err) => {
    document.body.dataset.a0vError = String(err && err.message ? err.message : err);
    const box = $('a0v-explore-error');
    if (box) { box.textContent = 'The interactive views could not start: ' + document.body.dataset.a0vError + ' (the static figures below show the same results).'; box.style.display = 'block'; }
    console.error(err);
  });
})();
