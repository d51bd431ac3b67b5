/* advsign monitoring page. Plain browser JavaScript, no build step, no third-party code besides
   the socket.io client the daemon serves itself. Every frame is acknowledged only after its
   images are decoded, so a slow screen throttles the daemon's sending instead of queueing.
   The page tells the daemon which images it draws ('view'), so hidden panels cost nothing.
   classroom.js (virtual sticker, print jobs) hooks in through window.advsign. */
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const socket = io({ transports: ['websocket', 'polling'] });

  const state = {
    classes: [],
    settings: null,
    frame: { width: 640, height: 480 },
    frames: 0,
    shownTimes: [],
    history: [], // {t, fooled, clean, adv}
    urls: {},
    aspect: 0,
    epsDragging: false,
    stickerActive: false,
    presentation: /(^|[?&])view=presentation(&|$)/.test(location.search),
    viewSent: '',
  };
  const hooks = { hello: [], frame: [] };

  // ---------------------------------------------------------------- helpers
  function pct(p) { return (p * 100).toFixed(p >= 0.995 ? 0 : 1) + ' %'; }
  function eps255(e) { const v = e * 255; return (Math.abs(v - Math.round(v)) < 0.05 ? Math.round(v) : v.toFixed(1)) + '/255'; }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  let toastTimer = 0;
  function toast(msg) {
    const t = $('toast');
    t.textContent = msg;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 5000);
  }
  function send(event, payload, quiet) {
    return new Promise((resolve) => {
      socket.timeout(5000).emit(event, payload, (err, res) => {
        if (err) { if (!quiet) toast('no answer from the daemon'); resolve(null); return; }
        if ((!res || !res.ok) && !quiet) toast((res && res.error) || 'refused');
        resolve(res);
      });
    });
  }

  // Long class names: the banner wraps (it never cuts text); beyond two lines its type shrinks.
  function fitText(e) {
    e.style.fontSize = '';
    const cs = getComputedStyle(e);
    let size = parseFloat(cs.fontSize);
    const pad = parseFloat(cs.paddingTop) + parseFloat(cs.paddingBottom);
    const min = Math.max(13, size * 0.6);
    while (e.scrollHeight - pad > size * 1.25 * 2 + 1 && size > min) {
      size -= 1;
      e.style.fontSize = size + 'px';
    }
  }

  // ---------------------------------------------------------------- top-5 bars
  function renderPred(container, pred, trueLabel, k) {
    container.textContent = '';
    pred.top5.slice(0, k || 5).forEach((e, i) => {
      const row = el('div', 'row' + (i === 0 ? ' first' : ''));
      const bar = el('div', 'bar');
      const fill = el('div', 'fill');
      fill.style.width = Math.max(0.5, e.p * 100).toFixed(1) + '%';
      const name = el('div', 'name', e.name);
      if (trueLabel !== null && e.classId === trueLabel) name.appendChild(el('span', 'truth', '✓'));
      name.title = e.name + ' (class ' + e.classId + ')';
      bar.append(fill, name);
      row.append(bar, el('div', 'p', pct(e.p)));
      container.appendChild(row);
    });
  }

  // ---------------------------------------------------------------- images
  function setImage(img, key, bytes, type) {
    if (!bytes) return Promise.resolve(); // not sent: this page does not draw it now
    const url = URL.createObjectURL(new Blob([bytes], { type }));
    const old = state.urls[key];
    state.urls[key] = url;
    img.src = url;
    const done = img.decode ? img.decode().catch(() => undefined) : Promise.resolve();
    return done.then(() => { if (old) URL.revokeObjectURL(old); });
  }

  // ---------------------------------------------------------------- layout and view
  function attackOn() { return !!state.settings && state.settings.attack !== 'none'; }

  // Which panels show: the attack's two when it is on, the sticker's when one is loaded.
  function applyPanels() {
    const on = attackOn();
    const showAttack = on || !state.stickerActive;
    $('panel-pert').hidden = !showAttack;
    $('panel-adv').hidden = !showAttack;
    $('panel-sticker').hidden = !state.stickerActive;
    setColumns();
    document.body.classList.toggle('presentation', state.presentation);
    $('present').textContent = state.presentation ? 'Full view' : 'Presentation';
    $('present').classList.toggle('active', state.presentation);
    sendView();
    requestAnimationFrame(fit);
  }

  // The images this page draws, sent whenever that changes (the daemon encodes only these).
  function sendView() {
    if (!socket.connected) return;
    const images = ['frame'];
    if (!state.presentation) images.push('cleanCrop');
    if (!$('panel-pert').hidden) images.push('perturbation', 'adversarial');
    if (state.stickerActive) images.push('sticker');
    const key = images.join(',');
    if (key === state.viewSent) return;
    state.viewSent = key;
    send('view', { images }, true);
  }

  // Wide screens: one row, equal heights (the camera panel as wide as its aspect, the square ones 1).
  function setColumns() {
    const square = ['panel-pert', 'panel-adv', 'panel-sticker'].filter((id) => !$(id).hidden).map(() => '1fr');
    $('panels').style.setProperty('--cols', [(state.aspect || 4 / 3).toFixed(3) + 'fr', ...square].join(' '));
  }

  function layout(w, h) {
    const aspect = w / h;
    if (Math.abs(aspect - state.aspect) < 1e-3) return;
    state.aspect = aspect;
    $('clean-stage').style.aspectRatio = w + ' / ' + h;
    setColumns();
    requestAnimationFrame(fit);
  }

  // Wide screens (a projector is wide and short): cap the panels' width so the verdict and the
  // panels fit the window height (controls may scroll). A stage's height follows its width.
  function fit() {
    const panels = $('panels');
    panels.style.maxWidth = '';
    if (window.innerWidth <= 1100) return;
    const box = panels.getBoundingClientRect();
    const stage = $('clean-stage').getBoundingClientRect().height;
    const over = box.bottom + 12 - window.innerHeight;
    if (!stage || over <= 0) return;
    // Shrinking the width by f shrinks the stages' height by f; captions and rows stay.
    const f = Math.max(0.45, (stage - over) / stage);
    panels.style.maxWidth = Math.round(box.width * f) + 'px';
  }
  window.addEventListener('resize', () => requestAnimationFrame(fit));

  function placeRoi(box, r) {
    const W = state.frame.width, H = state.frame.height;
    box.style.left = (r.x / W * 100) + '%';
    box.style.top = (r.y / H * 100) + '%';
    box.style.width = (r.w / W * 100) + '%';
    box.style.height = (r.h / H * 100) + '%';
    box.hidden = false;
  }

  // ---------------------------------------------------------------- verdict
  function verdictFor(p) {
    const on = p.attack.name !== 'none';
    if (p.attack.error) return ['neutral', 'Attack failed: ' + p.attack.error];
    if (on && p.stall) return ['stalled', 'Attack could not move: ' + p.stall];
    if (on && p.fooled) return ['bad', 'FOOLED: ' + p.clean.name + '  →  ' + p.adversarial.name];
    if (on) return ['ok', 'Not fooled: still ' + p.adversarial.name + ' (' + pct(p.adversarial.confidence) + ')'];
    if (p.sticker && p.sticker.fooled) return ['bad', 'STICKER FOOLS IT: ' + p.clean.name + '  →  ' + p.sticker.prediction.name];
    if (p.sticker) return ['ok', 'Sticker does not fool it: still ' + p.sticker.prediction.name];
    return ['neutral', 'Attack off — model says ' + p.clean.name + ' (' + pct(p.clean.confidence) + ')'];
  }

  // ---------------------------------------------------------------- frames
  function onFrame(p, ack) {
    state.frame = { width: p.width, height: p.height, roi: p.roi };
    layout(p.width, p.height);
    const img = p.images || {};
    const loads = [
      setImage($('img-frame'), 'frame', img.frame, 'image/jpeg'),
      setImage($('img-clean-crop'), 'clean', img.cleanCrop, 'image/png'),
      setImage($('img-pert'), 'pert', img.perturbation, 'image/png'),
      setImage($('img-adv'), 'adv', img.adversarial, 'image/png'),
      setImage($('img-sticker'), 'sticker', img.sticker, 'image/png'),
    ];
    placeRoi($('roi'), p.roi);
    const truth = p.label ? p.label.classId : null;
    const k = state.presentation ? 3 : 5;
    renderPred($('pred-clean'), p.clean, truth, k);
    renderPred($('pred-adv'), p.adversarial, truth, k);
    const on = p.attack.name !== 'none' && !p.attack.error;
    const cls = !on ? '' : p.fooled ? 'bad' : 'ok';
    $('pred-adv').className = 'pred ' + cls;
    $('adv-stage').className = 'stage square ' + cls;

    const v = $('verdict');
    const oldText = v.textContent;
    const [vcls, vtext] = verdictFor(p);
    v.className = 'verdict ' + vcls;
    v.textContent = vtext;
    if (v.textContent !== oldText) fitText(v);
    $('amp').textContent = p.amplify > 0 ? 'amplified ×' + p.amplify.toFixed(0) + ', grey = 0' : 'no attack';
    $('info-attack').textContent = p.attack.name === 'none' ? 'none' : p.attack.name.toUpperCase() + (p.attack.targeted ? ' → ' + p.attack.target : '') + (p.attack.name !== 'fgsm' ? ' ×' + p.attack.steps : '');
    $('info-eps').textContent = eps255(p.attack.eps);
    $('info-linf').textContent = eps255(p.linf);
    $('info-moved').textContent = on ? (p.moved * 100).toFixed(p.moved > 0 && p.moved < 0.01 ? 1 : 0) + ' %' : '–';
    const stall = $('info-stall');
    stall.hidden = !(on && p.stall);
    stall.textContent = on && p.stall ? 'Why 0/255: ' + p.stall : '';
    $('info-label').textContent = p.label ? p.label.name : 'unknown';
    $('fps').textContent = p.fps.toFixed(0);
    for (const h of hooks.frame) h(p, k);

    if (state.frames === 0) requestAnimationFrame(fit); // prediction rows now have their height
    state.frames++;
    const fc = $('frame-counter');
    fc.textContent = String(state.frames);
    fc.dataset.frames = String(state.frames);
    fc.dataset.seq = String(p.seq);
    const now = performance.now();
    state.shownTimes.push(now);
    while (state.shownTimes.length && now - state.shownTimes[0] > 2000) state.shownTimes.shift();
    const fooled = on ? (p.fooled ? 1 : 0) : p.sticker ? (p.sticker.fooled ? 1 : 0) : null;
    state.history.push({ t: Date.now(), fooled, clean: p.clean.confidence, adv: p.sticker && !on ? p.sticker.prediction.confidence : p.adversarial.confidence });
    while (state.history.length && Date.now() - state.history[0].t > 61000) state.history.shift();

    Promise.all(loads).then(() => { if (typeof ack === 'function') ack(); });
  }

  // ---------------------------------------------------------------- chart (own code, canvas)
  function drawChart() {
    const c = $('chart');
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); }
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const L = 44, R = 8, T = 8, B = 22;
    const pw = w - L - R, ph = h - T - B;
    g.font = '13px "DejaVu Sans", "Liberation Sans", sans-serif';
    g.fillStyle = '#5c6670';
    g.strokeStyle = '#dfe4e9';
    g.lineWidth = 1;
    for (const f of [0, 0.25, 0.5, 0.75, 1]) {
      const y = T + ph * (1 - f);
      g.beginPath(); g.moveTo(L, y); g.lineTo(L + pw, y); g.stroke();
      g.fillText((f * 100) + '%', 4, y + 4);
    }
    for (const s of [60, 45, 30, 15, 0]) {
      const x = L + pw * (1 - s / 60);
      g.fillText(s === 0 ? 'now' : '-' + s + ' s', Math.min(x - 12, L + pw - 28), h - 5);
    }
    const now = Date.now();
    const X = (t) => L + pw * (1 - (now - t) / 60000);
    const Y = (v) => T + ph * (1 - v);
    const hist = state.history;
    function line(values, color, width) {
      g.strokeStyle = color; g.lineWidth = width; g.lineJoin = 'round'; g.beginPath();
      let started = false;
      values.forEach((v, k) => {
        if (v === null) { started = false; return; }
        const x = X(hist[k].t), y = Y(v);
        if (!started) { g.moveTo(x, y); started = true; } else g.lineTo(x, y);
      });
      g.stroke();
    }
    // Fooled rate: mean over the last 30 frames with the attack on (gaps while it is off).
    const recent = [];
    const rate = hist.map((e) => {
      if (e.fooled === null) return null;
      recent.push(e.fooled);
      if (recent.length > 30) recent.shift();
      return recent.reduce((a, b) => a + b, 0) / recent.length;
    });
    line(hist.map((e) => e.clean), '#0b5cad', 1.6);
    line(hist.map((e) => e.adv), '#e08a00', 1.6);
    line(rate, '#c4001a', 3);
  }
  setInterval(drawChart, 250);

  // ---------------------------------------------------------------- controls
  function applySettings(s) {
    const wasOn = attackOn();
    state.settings = s;
    $('attack').value = s.attack;
    $('loss').value = s.loss;
    $('loss').disabled = s.attack === 'none';
    if (!state.epsDragging) {
      $('eps').value = String(Math.round(s.eps * 255));
      $('eps-value').textContent = eps255(s.eps);
    }
    $('targeted').checked = s.targeted;
    $('target').value = String(s.target);
    $('target').disabled = !s.targeted;
    $('steps').value = String(s.steps);
    $('steps').disabled = s.attack === 'fgsm' || s.attack === 'none';
    $('pause').textContent = s.paused ? 'Resume' : 'Pause';
    $('pause').classList.toggle('active', s.paused);
    const ack = $('eps-ack');
    ack.textContent = 'server: ε = ' + eps255(s.eps) + ' ✓';
    ack.dataset.eps = String(Math.round(s.eps * 255));
    ack.classList.add('confirmed');
    if (wasOn !== attackOn() || !state.viewSent) applyPanels();
  }

  let epsTimer = 0, epsLastSent = 0;
  function sendEps() {
    epsLastSent = performance.now();
    const v = Number($('eps').value) / 255;
    send('settings', { eps: v });
  }
  $('eps').addEventListener('input', () => {
    const v = Number($('eps').value);
    $('eps-value').textContent = v + '/255';
    $('eps-ack').classList.remove('confirmed');
    $('eps-ack').textContent = 'server: …';
    // Throttled while dragging: at most ~12 updates a second, and always the final value.
    clearTimeout(epsTimer);
    const wait = 80 - (performance.now() - epsLastSent);
    if (wait <= 0) sendEps(); else epsTimer = setTimeout(sendEps, wait);
  });
  $('eps').addEventListener('pointerdown', () => { state.epsDragging = true; });
  window.addEventListener('pointerup', () => { state.epsDragging = false; });
  $('eps').addEventListener('change', () => { clearTimeout(epsTimer); sendEps(); });

  $('attack').addEventListener('change', () => send('settings', { attack: $('attack').value }));
  $('loss').addEventListener('change', () => send('settings', { loss: $('loss').value }));
  $('targeted').addEventListener('change', () => send('settings', { targeted: $('targeted').checked, target: Number($('target').value) }));
  $('target').addEventListener('change', () => send('settings', { target: Number($('target').value) }));
  $('steps').addEventListener('change', () => {
    const n = Math.max(1, Math.min(20, Math.round(Number($('steps').value) || 1)));
    send('settings', { steps: n });
  });
  $('pause').addEventListener('click', () => send('settings', { paused: !(state.settings && state.settings.paused) }));
  $('roi-reset').addEventListener('click', () => send('settings', { roi: null }));
  $('source').addEventListener('change', () => {
    send('source', { source: $('source').value }).then((r) => { if (r && r.ok) toast('source: ' + r.source); });
  });
  function download(href, name) {
    const a = document.createElement('a');
    a.href = href;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
  }
  $('snapshot').addEventListener('click', () => download('/api/snapshot.png', 'advsign-snapshot.png'));
  $('print').addEventListener('click', () => {
    const mm = Math.round(Number($('print-size').value));
    if (!(mm >= 10 && mm <= 1000)) { toast('print size must be 10 … 1000 mm'); return; }
    window.open('/api/print?size_mm=' + mm, '_blank', 'noopener');
  });
  function togglePresentation() {
    state.presentation = !state.presentation;
    applyPanels();
  }
  $('present').addEventListener('click', togglePresentation);
  window.addEventListener('keydown', (e) => {
    const t = e.target && e.target.tagName;
    if ((e.key === 'p' || e.key === 'P') && t !== 'INPUT' && t !== 'SELECT' && t !== 'TEXTAREA' && !e.ctrlKey && !e.metaKey) togglePresentation();
    if (e.key === 'Escape' && state.presentation) togglePresentation();
  });

  // ROI: drag a square on the clean panel; double-click for the default centre square.
  (function roiDrag() {
    const stage = $('clean-stage');
    const draft = $('roi-draft');
    let start = null, box = null;
    function toFrame(e) {
      const r = stage.getBoundingClientRect();
      return {
        x: Math.max(0, Math.min(1, (e.clientX - r.left) / r.width)) * state.frame.width,
        y: Math.max(0, Math.min(1, (e.clientY - r.top) / r.height)) * state.frame.height,
      };
    }
    stage.addEventListener('pointerdown', (e) => {
      if (e.button !== 0) return;
      start = toFrame(e);
      box = null;
      stage.setPointerCapture(e.pointerId);
    });
    stage.addEventListener('pointermove', (e) => {
      if (!start) return;
      const p = toFrame(e);
      const W = state.frame.width, H = state.frame.height;
      let side = Math.max(Math.abs(p.x - start.x), Math.abs(p.y - start.y));
      const sx = p.x >= start.x ? 1 : -1, sy = p.y >= start.y ? 1 : -1;
      side = Math.min(side, sx > 0 ? W - start.x : start.x, sy > 0 ? H - start.y : start.y);
      box = { x: sx > 0 ? start.x : start.x - side, y: sy > 0 ? start.y : start.y - side, w: side, h: side };
      placeRoi(draft, box);
    });
    stage.addEventListener('pointerup', () => {
      const W = state.frame.width, H = state.frame.height;
      if (box && box.w >= 0.04 * Math.min(W, H)) {
        send('settings', { roi: { x: box.x / W, y: box.y / H, w: box.w / W, h: box.h / H } });
      }
      start = null;
      box = null;
      draft.hidden = true;
    });
    stage.addEventListener('dblclick', () => send('settings', { roi: null }));
  })();

  // ---------------------------------------------------------------- socket events
  function conn(cls, title) { const c = $('conn'); c.className = 'dot ' + cls; c.title = title; c.dataset.state = cls; }
  socket.on('connect', () => { conn('on', 'connected'); state.viewSent = ''; sendView(); });
  socket.on('disconnect', () => conn('off', 'offline'));
  socket.on('connect_error', (e) => {
    const unauthorized = e && e.message === 'unauthorized';
    conn('lost', unauthorized ? 'token needed' : 'offline');
    if (unauthorized) toast('the daemon needs its access token: open the address it printed at start');
  });

  socket.on('hello', (h) => {
    state.classes = h.classes;
    const tgt = $('target');
    tgt.textContent = '';
    h.classes.forEach((name, i) => { const o = el('option', '', i + ' · ' + name); o.value = String(i); tgt.appendChild(o); });
    const src = $('source');
    src.textContent = '';
    h.sources.forEach((s) => { const o = el('option', '', s); o.value = s; src.appendChild(o); });
    src.value = h.source.source;
    $('eps').max = String(Math.round(h.limits.epsMax * 255));
    $('steps').max = String(h.limits.maxSteps);
    const att = $('attack');
    for (const o of Array.from(att.options)) o.disabled = h.limits.attacks.indexOf(o.value) < 0;
    applySettings(h.settings);
    for (const f of hooks.hello) f(h);
  });

  socket.on('settings', applySettings);
  socket.on('frame', onFrame);

  socket.on('status', (s) => {
    const p = $('source-state');
    p.textContent = s.source + ': ' + s.state;
    p.title = s.message || '';
    p.className = 'pill ' + (s.state === 'running' ? 'on' : s.state === 'lost' ? 'lost' : s.state === 'retrying' || s.state === 'starting' ? s.state : 'off');
    p.dataset.state = s.state;
    const lost = s.state === 'lost' || s.state === 'retrying';
    $('lost').hidden = !lost;
    $('lost-msg').textContent = lost ? (s.message || '') + (s.state === 'retrying' ? ' — retrying…' : '') : '';
    const sel = $('source');
    if (Array.from(sel.options).some((o) => o.value === s.source)) sel.value = s.source;
  });

  socket.on('stats', (s) => {
    for (const td of document.querySelectorAll('#latency td')) {
      const l = s.latency[td.dataset.stage];
      td.textContent = l ? l.p50.toFixed(1) + ' / ' + l.p95.toFixed(1) : '–';
    }
    const n = state.shownTimes.length;
    const span = n > 1 ? (state.shownTimes[n - 1] - state.shownTimes[0]) / 1000 : 0;
    $('client-fps').textContent = span > 0 ? ((n - 1) / span).toFixed(0) : '0';
    $('backend').textContent = s.backend + ' · ' + s.numTensors + ' tensors · ' + s.rssMB.toFixed(0) + ' MB';
    const r = $('sticker-rate');
    r.textContent = s.stickerFooledRate === null ? '–' : pct(s.stickerFooledRate);
    r.dataset.rate = s.stickerFooledRate === null ? '' : String(s.stickerFooledRate);
  });

  socket.on('snapshot', (s) => toast('snapshot saved on the device: ' + s.file));
  socket.on('error', (e) => toast('daemon: ' + (e && e.message ? e.message : 'error')));

  applyPanels();

  // What classroom.js builds on.
  window.advsign = {
    socket, state, hooks, $, el, toast, send, pct, renderPred, download,
    setStickerActive(on) {
      if (state.stickerActive === on) return;
      state.stickerActive = on;
      applyPanels();
    },
  };
})();
