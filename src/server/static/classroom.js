/* advsign page, classroom part: the virtual sticker (load a `sticker` run, see clean vs with
   sticker and its own fooled rate) and print jobs (an EOT sticker for the sign in view,
   optimised beside the stream, then offered as a PDF and loaded as the virtual sticker).
   Builds on window.advsign from app.js. */
'use strict';

(function () {
  const A = window.advsign;
  const { $, el, socket, send, toast, pct } = A;
  const known = { stickers: { active: null, items: [] } };

  // ---------------------------------------------------------------- virtual sticker
  function activeSticker() {
    return known.stickers.items.find((s) => s.id === known.stickers.active) || null;
  }

  function renderStickers(m) {
    known.stickers = m;
    const sel = $('sticker-select');
    sel.textContent = '';
    const none = el('option', '', 'none');
    none.value = '';
    sel.appendChild(none);
    for (const s of m.items) {
      const o = el('option', '', s.name + (s.origin === 'job' ? ' (printed here)' : ''));
      o.value = s.id;
      sel.appendChild(o);
    }
    sel.value = m.active || '';
    const a = activeSticker();
    $('sticker-hint').textContent = a ? a.name + (a.heldOutSuccess !== null ? ' · EOT ' + pct(a.heldOutSuccess) : '') : 'virtual sticker';
    $('panel-sticker').dataset.sticker = a ? a.id : '';
    A.setStickerActive(!!a);
  }

  $('sticker-select').addEventListener('change', () => {
    const id = $('sticker-select').value || null;
    send('sticker', { id });
  });

  function status(text, bad) {
    const s = $('sticker-status');
    s.textContent = text;
    s.classList.toggle('bad', !!bad);
  }

  function readAs(file, how) {
    return new Promise((resolve, reject) => {
      const r = new FileReader();
      r.onload = () => resolve(r.result);
      r.onerror = () => reject(new Error('cannot read ' + file.name));
      if (how === 'text') r.readAsText(file); else r.readAsDataURL(file);
    });
  }

  // The picked files: the run's JSON and the layer PNG it names (both are needed).
  $('sticker-file').addEventListener('change', async () => {
    const files = Array.from($('sticker-file').files || []);
    $('sticker-file').value = '';
    const jsonFile = files.find((f) => /\.json$/i.test(f.name));
    if (!jsonFile) { status('pick the run\'s .json file (and its -layer.png)', true); return; }
    let text, run;
    try {
      text = await readAs(jsonFile, 'text');
      run = JSON.parse(text);
    } catch (e) {
      status(jsonFile.name + ' is not JSON: pick the .json that advsign sticker wrote', true);
      return;
    }
    const layerName = run && run.layer && run.layer.file;
    if (typeof layerName !== 'string') { status(jsonFile.name + ' has no sticker layer: run advsign sticker again (a newer advsign writes one)', true); return; }
    const png = files.find((f) => f.name === layerName);
    if (!png) { status('also pick ' + layerName + ' (beside ' + jsonFile.name + '): select both files together', true); return; }
    status('loading ' + jsonFile.name + '…');
    try {
      const dataUrl = await readAs(png, 'url');
      const res = await fetch('/api/sticker', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, credentials: 'same-origin',
        body: JSON.stringify({ name: jsonFile.name, json: text, layer: String(dataUrl).replace(/^data:[^,]*,/, '') }),
      });
      const body = await res.json().catch(() => ({}));
      if (!res.ok) { status(body.error || ('refused (' + res.status + ')'), true); return; }
      status('loaded: ' + body.sticker.name);
    } catch (e) {
      status('upload failed: ' + e.message, true);
    }
  });

  A.hooks.frame.push((p, k) => {
    const s = p.sticker;
    if (!s) return;
    A.renderPred($('pred-sticker'), s.prediction, p.label ? p.label.classId : null, k);
    const cls = s.fooled ? 'bad' : 'ok';
    $('pred-sticker').className = 'pred ' + cls;
    $('sticker-stage').className = 'stage square ' + cls;
    const a = activeSticker();
    $('sticker-rate-note').textContent = s.matchesSign ? 'of recent frames' : 'of recent frames · made for ' + (a ? a.className : 'another sign') + ', not the sign in view';
  });

  // ---------------------------------------------------------------- print jobs
  const job = { current: null, available: true, reason: '' };

  function fillTargets(classes) {
    const sel = $('job-target');
    const keep = sel.value;
    sel.textContent = '';
    const any = el('option', '', 'any other class (untargeted)');
    any.value = 'any';
    sel.appendChild(any);
    classes.forEach((name, i) => { const o = el('option', '', i + ' · ' + name); o.value = String(i); sel.appendChild(o); });
    sel.value = keep || '1';
  }

  function renderJob(j) {
    job.current = j;
    const running = !!j && j.state === 'running';
    $('job-start').disabled = running || !job.available;
    $('job-cancel').hidden = !running;
    $('job-progress').hidden = !j || j.state === 'failed';
    $('job-card').dataset.state = j ? j.state : '';
    const link = $('job-pdf');
    if (!j) {
      $('job-status').textContent = job.available ? 'the job runs beside the stream; when it is done the PDF is offered and the sticker is loaded here' : job.reason;
      link.hidden = true;
      return;
    }
    const frac = j.steps ? j.done / j.steps : 0;
    $('job-fill').style.width = (j.state === 'done' ? 100 : Math.round(frac * 100)) + '%';
    $('job-progress').dataset.done = String(j.done);
    const what = j.className + ' → ' + (j.target ? j.target.name : 'any other class') + ', ' + j.signMm + ' mm';
    const phase = { starting: 'starting', optimise: 'optimising ' + j.done + '/' + j.steps, measure: 'measuring', export: 'writing the PDF', finished: '' }[j.phase] || j.phase;
    const text = {
      running: 'Printing ' + what + ': ' + phase + ' (' + Math.round(j.seconds) + ' s)',
      done: 'Done in ' + Math.round(j.seconds) + ' s: ' + what + (j.stickerId ? ' — loaded as the virtual sticker' : ''),
      failed: 'Print job failed: ' + (j.message || 'unknown error'),
      cancelled: 'Print job cancelled: ' + (j.message || ''),
    }[j.state];
    $('job-status').textContent = text;
    $('job-status').classList.toggle('bad', j.state === 'failed' || j.state === 'cancelled');
    link.hidden = !(j.state === 'done' && j.pdf);
    if (j.pdf) {
      link.href = j.pdf;
      link.download = j.pdf.split('/').pop();
    }
  }

  $('job-start').addEventListener('click', async () => {
    const t = $('job-target').value;
    const signMm = Math.round(Number($('job-mm').value));
    if (!(signMm >= 20 && signMm <= 3000)) { toast('sign size must be 20 … 3000 mm'); return; }
    const res = await send('print', { action: 'start', target: t === 'any' ? null : Number(t), signMm, steps: Number($('job-steps').value) }, true);
    if (!res) { toast('no answer from the daemon'); return; }
    if (!res.ok) {
      $('job-status').textContent = 'Not started: ' + res.error;
      $('job-status').classList.add('bad');
      return;
    }
    renderJob(res.job);
  });

  $('job-cancel').addEventListener('click', () => send('print', { action: 'cancel' }));

  A.hooks.hello.push((h) => {
    fillTargets(h.classes);
    job.available = h.printJobs.available;
    job.reason = h.printJobs.reason || '';
    $('job-mm').min = String(h.limits.signMm[0]);
    $('job-mm').max = String(h.limits.signMm[1]);
    renderStickers(h.stickers);
    renderJob(h.job);
  });
  socket.on('stickers', renderStickers);
  socket.on('job', renderJob);
})();
