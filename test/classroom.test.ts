/**
 * The classroom demo through the daemon's own interfaces: the virtual sticker (overlay geometry,
 * run files and their bad inputs, socket and HTTP loading, the with-sticker fooled rate in
 * /metrics), per-page views, stall reasons, and print jobs run in a child process (progress,
 * PDF, refusals, cancel, a page that disconnects mid-job).
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { io as ioClient, Socket } from 'socket.io-client';
import { initBackend } from '../src/inference/backend';
import { tf } from '../src/inference/tf';
import { buildModel, Classifier, LayersClassifier } from '../src/inference/model';
import { saveModel } from '../src/inference/model-io';
import { stickerCommand, outputPaths } from '../src/cli/sticker';
import { startServer, RunningServer } from '../src/server/app';
import { DEFAULT_CONFIG, ServeConfig } from '../src/server/config';
import { memoryLogger } from '../src/server/log';
import { Pipeline, PipelineSettings } from '../src/server/pipeline';
import type { FramePayload, JobMessage, StickersMessage } from '../src/server/protocol';
import { StickerOverlay, stickerFromFile } from '../src/server/sticker-overlay';
import { pdfComplete } from '../src/server/print-jobs';
import { runCli, tempDir, tinyStickerArgs } from './helpers';

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Page {
  socket: Socket;
  frames: FramePayload[];
  jobs: JobMessage[];
  stickers: StickersMessage[];
  hello: Promise<Record<string, unknown>>;
}

function connect(url: string): Page {
  const socket = ioClient(url, { transports: ['websocket'], reconnection: false, forceNew: true });
  const p: Page = { socket, frames: [], jobs: [], stickers: [], hello: new Promise((r) => socket.once('hello', r)) };
  socket.on('frame', (f: FramePayload, ack?: () => void) => {
    p.frames.push(f);
    ack?.();
  });
  socket.on('job', (j: JobMessage) => p.jobs.push(j));
  socket.on('stickers', (m: StickersMessage) => p.stickers.push(m));
  return p;
}

function emitAck<T = { ok: boolean; error?: string }>(s: Socket, event: string, msg: unknown): Promise<T> {
  return s.timeout(10000).emitWithAck(event, msg) as Promise<T>;
}

/** A quick sticker run (tiny optimisation) for the given model folder. */
async function stickerRun(modelDir: string, out: string, extra: string[] = []): Promise<string> {
  const log = console.log;
  console.log = () => undefined;
  try {
    await stickerCommand(tinyStickerArgs(modelDir, out, '--canvas', '32', ...extra));
  } finally {
    console.log = log;
  }
  return outputPaths(out).json;
}

describe('classroom: the virtual sticker', function () {
  this.timeout(120000);
  let dir: string, modelDir: string, runJson: string;
  let clf: LayersClassifier;

  before(async () => {
    await initBackend();
    dir = tempDir('advsign-classroom-');
    modelDir = path.join(dir, 'model');
    const model = buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 5 });
    await saveModel(model, modelDir);
    clf = new LayersClassifier(model);
    runJson = await stickerRun(modelDir, path.join(dir, 'run', 'stop.pdf'));
  });
  after(() => {
    clf?.model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('draws the layer over the centred sign square, scaled to the model input', () => {
    // An opaque red layer over the whole bounding square: red exactly where the square lands.
    const L = 16,
      s = 20;
    const layer = { size: L, rgb: new Float32Array(L * L * 3), alpha: new Float32Array(L * L).fill(1) };
    for (let i = 0; i < L * L; i++) layer.rgb[3 * i] = 1;
    const o = new StickerOverlay(layer, 0.8, s);
    const input = new Float32Array(s * s * 3).fill(0.5);
    const out = o.apply(input);
    const px = (x: number, y: number) => Array.from(out.subarray(3 * (y * s + x), 3 * (y * s + x) + 3));
    // 0.8 · 20 = 16 px square from 2 to 18.
    assert.deepEqual(px(2, 2), [1, 0, 0]);
    assert.deepEqual(px(17, 17), [1, 0, 0]);
    assert.deepEqual(px(1, 10), [0.5, 0.5, 0.5]);
    assert.deepEqual(px(18, 10), [0.5, 0.5, 0.5]);
    assert.ok(Math.abs(o.coverage() - 0.64) < 1e-6, String(o.coverage()));
    // Half-transparent: a blend, not a replacement.
    const half = new StickerOverlay({ ...layer, alpha: new Float32Array(L * L).fill(0.5) }, 0.8, s);
    assert.ok(Math.abs(half.apply(input)[3 * (10 * s + 10)] - 0.75) < 1e-6);
  });

  it('advsign sticker wrote the layer PNG and its geometry; the overlay reads them back', async () => {
    const run = JSON.parse(fs.readFileSync(runJson, 'utf8'));
    assert.deepEqual(run.layer, { file: 'stop-layer.png', size: 32, covers: 'sign bounding square', signFraction: 0.8 });
    assert.equal(run.modelCheck.probeLogits.length, 43);
    const meta = await sharp(path.join(path.dirname(runJson), 'stop-layer.png')).metadata();
    assert.equal(meta.width, 32);
    assert.equal(meta.channels, 4);
    const s = await stickerFromFile(runJson, clf, { id: 'cli-1', origin: 'cli', pdf: null });
    assert.equal(s.summary.name, 'Stop → Speed limit (30km/h)');
    assert.ok(s.overlay.coverage() > 0.02 && s.overlay.coverage() < 0.5, `coverage ${s.overlay.coverage()}`);
  });

  it('refuses runs that are not one, from another model, for another input size, or without their layer', async () => {
    const meta = { id: 'cli-1', origin: 'cli' as const, pdf: null };
    const write = (name: string, text: string) => {
      const f = path.join(dir, name);
      fs.writeFileSync(f, text);
      return f;
    };
    const refuses = async (file: string, re: RegExp, model = clf) => {
      await assert.rejects(stickerFromFile(file, model, meta), (e: Error) => {
        assert.equal(e.name, 'UserError', e.message);
        assert.match(e.message, re);
        assert.ok(!e.message.includes('\n'));
        return true;
      });
    };
    const run = JSON.parse(fs.readFileSync(runJson, 'utf8'));
    const sibling = (name: string, v: unknown) => {
      const f = path.join(path.dirname(runJson), name);
      fs.writeFileSync(f, JSON.stringify(v));
      return f;
    };
    await refuses(write('garbage.json', 'not json {'), /is not JSON/);
    await refuses(write('other.json', JSON.stringify({ hello: 1 })), /is not an advsign sticker run/);
    await refuses(path.join(dir, 'missing.json'), /not found/);
    await refuses(sibling('old.json', { ...run, layer: undefined }), /no sticker layer.*run 'advsign sticker' again/);
    await refuses(sibling('size48.json', { ...run, modelCheck: { ...run.modelCheck, inputSize: 48 } }), /made for a 48×48 model; this model takes 32×32/);
    await refuses(sibling('nolayer.json', { ...run, layer: { ...run.layer, file: 'gone-layer.png' } }), /gone-layer\.png not found/);
    await refuses(sibling('wrongsize.json', { ...run, layer: { ...run.layer, size: 64 } }), /is 32×32, the run says 64×64/);
    const other = new LayersClassifier(buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 6 }));
    try {
      await refuses(runJson, /made for another model/, other);
    } finally {
      other.model.dispose();
    }
  });

  it('advsign serve --sticker with a file that is not a run: one line, exit 2', async () => {
    const bad = path.join(dir, 'other.json');
    fs.writeFileSync(bad, JSON.stringify({ hello: 1 }));
    const r = await runCli(['serve', '--model', 'untrained', '--source', 'synthetic', '--port', '0', '--sticker', bad, '--log-level', 'silent']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^advsign: error: other\.json is not an advsign sticker run: .*\n$/);
  });
});

describe('classroom: the daemon with a virtual sticker, views and print jobs', function () {
  this.timeout(180000);
  let dir: string, modelDir: string, runJson: string, printDir: string;
  let clf: LayersClassifier;
  let server: RunningServer;
  const log = memoryLogger('info');
  const pages: Page[] = [];
  const page = () => {
    const p = connect(server.url);
    pages.push(p);
    return p;
  };

  before(async () => {
    await initBackend();
    dir = tempDir('advsign-classroom-srv-');
    modelDir = path.join(dir, 'model');
    printDir = path.join(dir, 'prints');
    const model = buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43, seed: 5 });
    await saveModel(model, modelDir);
    clf = new LayersClassifier(model);
    runJson = await stickerRun(modelDir, path.join(dir, 'run', 'stop.pdf'));
    const config: ServeConfig = {
      ...DEFAULT_CONFIG,
      sources: [],
      ffmpegInputArgs: [],
      port: 0,
      source: 'synthetic',
      width: 160,
      height: 120,
      fps: 20,
      logLevel: 'silent',
      attack: 'none',
      sticker: runJson,
      printDir,
    };
    server = await startServer({ config, classifier: clf, logger: log, modelPath: modelDir, limits: { printJob: [20, 60], upload: [20, 60] } });
  });
  after(async () => {
    for (const p of pages) p.socket.disconnect();
    await server?.close();
    clf?.model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("frames carry the with-sticker prediction and image; with the attack off /metrics fooledRate is the sticker's", async () => {
    const p = page();
    const hello = await p.hello;
    const st = hello.stickers as StickersMessage;
    assert.equal(st.active, 'cli-1');
    assert.equal(st.items[0].name, 'Stop → Speed limit (30km/h)');
    const results: { fooled: boolean }[] = [];
    server.daemon.on('result', (r) => {
      if (r.sticker) results.push({ fooled: r.sticker.fooled });
    });
    await waitFor(() => p.frames.length >= 5 && results.length >= 30, 20000, 'frames with the sticker');
    const f = p.frames[p.frames.length - 1];
    assert.ok(f.sticker, 'a sticker frame');
    assert.equal(f.sticker!.target, 1);
    assert.equal(f.sticker!.fooled, f.sticker!.prediction.classId === 1 && f.clean.classId !== 1);
    const [a, b] = await Promise.all([f.images.cleanCrop!, f.images.sticker!].map((x) => sharp(x).raw().toBuffer()));
    let changed = 0;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) changed++;
    assert.ok(changed > 0.02 * a.length && changed < 0.6 * a.length, `the sticker changes part of the input (${changed}/${a.length})`);
    // Freeze, then compare /metrics.json with the daemon's own last 90 sticker frames.
    await emitAck(p.socket, 'settings', { paused: true });
    await new Promise((r) => setTimeout(r, 300));
    const m = (await (await fetch(`${server.url}metrics.json`)).json()) as { fooledRate: number; stickerFooledRate: number };
    const last = results.slice(-90);
    const share = last.filter((r) => r.fooled).length / last.length;
    assert.ok(Math.abs(m.fooledRate - share) < 0.006, `fooledRate ${m.fooledRate} vs ${share}`);
    assert.equal(m.stickerFooledRate, m.fooledRate);
    await emitAck(p.socket, 'settings', { paused: false });
  });

  it('a page gets only the images it draws; the sticker can be cleared and chosen again', async () => {
    const p = page();
    await p.hello;
    const v = await emitAck<{ ok: boolean; images: string[] }>(p.socket, 'view', { images: ['frame', 'sticker'] });
    assert.deepEqual(v.images, ['frame', 'sticker']);
    for (const pg of pages) if (pg !== p) await emitAck(pg.socket, 'view', { images: ['frame'] });
    const n = p.frames.length;
    await waitFor(() => p.frames.length > n + 3, 10000, 'frames after the view');
    assert.deepEqual(Object.keys(p.frames[p.frames.length - 1].images).sort(), ['frame', 'sticker']);
    // Nobody draws the perturbation: the loop no longer encodes it.
    await waitFor(() => server.daemon.last !== null && server.daemon.last.images.perturbation === undefined, 5000, 'unencoded perturbation');
    assert.equal((await emitAck(p.socket, 'view', { images: ['frame', 'x-ray'] })).ok, false);

    const cleared = await emitAck<{ ok: boolean; stickers: StickersMessage }>(p.socket, 'sticker', { id: null });
    assert.equal(cleared.stickers.active, null);
    const k = p.frames.length;
    await waitFor(() => p.frames.length > k + 2 && p.frames[p.frames.length - 1].sticker === null, 10000, 'frames without a sticker');
    assert.equal((await emitAck(p.socket, 'sticker', { id: 'upload-99' })).ok, false);
    assert.equal((await emitAck(p.socket, 'sticker', { id: 'cli-1' })).ok, true);
    await waitFor(() => p.frames[p.frames.length - 1].sticker?.id === 'cli-1', 10000, 'the sticker again');
  });

  it('POST /api/sticker loads a run picked on the page; bad uploads get one line and the stream goes on', async () => {
    const run = fs.readFileSync(runJson, 'utf8');
    const layer = fs.readFileSync(path.join(path.dirname(runJson), 'stop-layer.png')).toString('base64');
    const post = (body: unknown) =>
      fetch(`${server.url}api/sticker`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    const ok = await post({ name: 'stop.json', json: run, layer });
    const okBody = (await ok.json()) as { sticker: { id: string }; stickers: StickersMessage };
    assert.equal(ok.status, 200, JSON.stringify(okBody));
    assert.match(okBody.sticker.id, /^upload-\d+$/);
    assert.equal(okBody.stickers.active, okBody.sticker.id);
    const bad = async (body: unknown, re: RegExp) => {
      const r = await post(body);
      const b = (await r.json()) as { error: string };
      assert.equal(r.status, 400, JSON.stringify(b));
      assert.match(b.error, re);
    };
    await bad({ name: 'x.json', json: '{"nope": true}', layer }, /x\.json is not an advsign sticker run/);
    await bad({ name: 'x.json', json: 'garbage', layer }, /not JSON/);
    await bad({ name: 'stop.json', json: run, layer: Buffer.from('not a png').toString('base64') }, /not a readable PNG/);
    await bad({ json: run }, /exactly \{name, json, layer\}/);
    const huge = await post({ name: 'a', json: 'x'.repeat(3 * 2 ** 20), layer: '' });
    assert.equal(huge.status, 413);
    assert.ok(
      log.lines.some((l) => l.event === 'sticker.rejected'),
      'rejections are logged',
    );
    const frames = server.daemon.stats.frames;
    await waitFor(() => server.daemon.stats.frames > frames + 2, 5000, 'still streaming');
  });

  it('the page says why an attack changed nothing (ε 0, a zero gradient, a blank region of interest)', async () => {
    const base: PipelineSettings = { attack: 'bim', eps: 8 / 255, targeted: false, target: 14, steps: 2, loss: 'margin', roi: null, paused: false };
    const frame = (v: number) => ({ rgb: Buffer.alloc(64 * 48 * 3, v), width: 64, height: 48, t: performance.now(), seq: 0, decodeMs: 0 });
    const noisy = { ...frame(0), rgb: Buffer.from(Array.from({ length: 64 * 48 * 3 }, (_, i) => (i * 37) % 251)) };
    const pipe = new Pipeline(clf);
    const zero = await pipe.process(noisy, { ...base, eps: 0 }, { images: [] });
    assert.equal(zero.linf, 0);
    assert.match(zero.stall!, /ε is 0/);
    const moved = await pipe.process(noisy, base, { images: [] });
    assert.ok(moved.linf > 0 && moved.moved > 0.5, `moved ${moved.moved}`);
    assert.equal(moved.stall, null);
    assert.deepEqual(Object.keys(moved.images), [], 'nothing encoded when no image is wanted');
    // A model whose output ignores its input: its gradient is exactly zero, the attack cannot move.
    const bias = tf.tensor2d([Array.from({ length: 43 }, (_, i) => (i === 3 ? 5 : 0))]);
    const flat: Classifier = {
      inputSize: 32,
      numClasses: 43,
      trainableWeights: [],
      logits: (x) => tf.tidy(() => tf.add(tf.mul(tf.sum(x, [1, 2, 3], true).reshape([-1, 1]), 0), bias) as tf.Tensor2D),
    };
    try {
      const stuck = new Pipeline(flat);
      const g = await stuck.process(noisy, base, { images: [] });
      assert.equal(g.linf, 0);
      assert.match(g.stall!, /gradient is exactly zero/);
      const blank = await stuck.process(frame(128), base, { images: [] });
      assert.match(blank.stall!, /blank .*no sign in view/);
    } finally {
      bias.dispose();
    }
  });

  it('a print job: progress, the PDF (whole), the result loaded as the sticker; refusals in one line', async () => {
    const p = page();
    await p.hello;
    await waitFor(() => server.daemon.last !== null, 5000, 'a frame');
    // The handler reads the class in view itself; this test model scores two classes almost equally, so
    // the class can flip between our read and the handler's: a job started that way is cancelled and retried.
    let inView = server.daemon.last!.clean.classId;
    let same = await emitAck(p.socket, 'print', { action: 'start', target: inView, signMm: 100, steps: 3 });
    for (let attempt = 0; same.ok && attempt < 5; attempt++) {
      await emitAck(p.socket, 'print', { action: 'cancel' });
      await waitFor(() => p.jobs.some((j) => j.state !== 'running'), 10000, 'the stray job to end');
      p.jobs.length = 0;
      inView = server.daemon.last!.clean.classId;
      same = await emitAck(p.socket, 'print', { action: 'start', target: inView, signMm: 100, steps: 3 });
    }
    assert.equal(same.ok, false);
    assert.match(same.error!, /the sign in view is already .*pick another target/);
    assert.match((await emitAck(p.socket, 'print', { action: 'start', target: 1, signMm: 5, steps: 3 })).error!, /signMm must be/);
    const target = inView === 1 ? 2 : 1;
    const started = await emitAck<{ ok: boolean; job: JobMessage }>(p.socket, 'print', { action: 'start', target, signMm: 100, steps: 4 });
    assert.equal(started.ok, true, JSON.stringify(started));
    const again = await emitAck(p.socket, 'print', { action: 'start', target, signMm: 100, steps: 4 });
    assert.match(again.error!, /a print job is already running/);
    const frames = server.daemon.stats.frames;
    await waitFor(() => p.jobs.some((j) => j.state !== 'running'), 90000, 'the job to finish');
    assert.ok(server.daemon.stats.frames > frames + 10, 'the stream kept going during the job');
    const done = p.jobs.find((j) => j.state !== 'running')!;
    assert.equal(done.state, 'done', JSON.stringify(done));
    assert.ok(
      p.jobs.some((j) => j.state === 'running' && j.phase === 'optimise' && j.done > 0),
      'progress was reported',
    );
    const pdf = Buffer.from(await (await fetch(new URL(done.pdf!, server.url))).arrayBuffer());
    assert.equal(pdf.subarray(0, 5).toString('latin1'), '%PDF-');
    assert.match(pdf.subarray(pdf.length - 8).toString('latin1'), /%%EOF\s*$/);
    await waitFor(() => p.jobs.some((j) => j.stickerId !== undefined), 10000, 'the job sticker');
    const sid = p.jobs.find((j) => j.stickerId)!.stickerId!;
    await waitFor(() => p.frames.length > 0 && p.frames[p.frames.length - 1].sticker?.id === sid, 10000, "the job's sticker in use");
    assert.equal((await fetch(`${server.url}api/jobs/${done.id}/other.pdf`)).status, 404);
    assert.equal((await fetch(`${server.url}api/jobs/..%2F..%2Fetc/passwd`)).status, 404);
    assert.deepEqual(
      fs.readdirSync(printDir).filter((n) => n.startsWith('.staging')),
      [],
    );
  });

  it('cancel, and a page that disconnects mid-job: no half-written PDF, the daemon keeps streaming', async () => {
    const p = page();
    await p.hello;
    const target = server.daemon.last!.clean.classId === 1 ? 2 : 1;
    const staged = () => fs.readdirSync(printDir).filter((n) => n.startsWith('.staging'));
    const before = fs.readdirSync(printDir).filter((n) => !n.startsWith('.')).length;
    assert.equal((await emitAck(p.socket, 'print', { action: 'start', target, signMm: 100, steps: 1000 })).ok, true);
    await waitFor(() => p.jobs.some((j) => j.state === 'running' && j.done > 0), 60000, 'the job running');
    assert.equal(staged().length, 1);
    assert.equal((await emitAck(p.socket, 'print', { action: 'cancel' })).ok, true);
    await waitFor(() => p.jobs.some((j) => j.state === 'cancelled'), 10000, 'cancelled');
    assert.deepEqual(staged(), []);

    const q = page();
    await q.hello;
    assert.equal((await emitAck(q.socket, 'print', { action: 'start', target, signMm: 100, steps: 1000 })).ok, true);
    await waitFor(() => p.jobs.filter((j) => j.state === 'running').length > 0 && staged().length === 1, 30000, 'second job running');
    q.socket.disconnect();
    await waitFor(() => p.jobs.some((j) => j.state === 'cancelled' && /disconnected/.test(j.message ?? '')), 10000, 'cancelled on disconnect');
    assert.ok(
      log.lines.some((l) => l.event === 'print.job_cancelled' && /disconnected/.test(String(l.message))),
      'logged',
    );
    await waitFor(() => staged().length === 0, 5000, 'staging removed');
    assert.equal(fs.readdirSync(printDir).filter((n) => !n.startsWith('.')).length, before, 'no new job folder');
    for (const d of fs.readdirSync(printDir).filter((n) => !n.startsWith('.'))) {
      for (const f of fs.readdirSync(path.join(printDir, d)).filter((n) => n.endsWith('.pdf'))) assert.ok(pdfComplete(path.join(printDir, d, f)), f);
    }
    const frames = server.daemon.stats.frames;
    await waitFor(() => server.daemon.stats.frames > frames + 3, 5000, 'still streaming');
  });
});
