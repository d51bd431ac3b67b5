import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import sharp from 'sharp';
import { io as ioClient, Socket } from 'socket.io-client';
import { tf } from '../src/inference/tf';
import { initBackend } from '../src/inference/backend';
import { buildModel, LayersClassifier } from '../src/inference/model';
import { startServer, RunningServer, ServerOptions, redact } from '../src/server/app';
import { DEFAULT_CONFIG, EPS_MAX, ServeConfig, isLoopback, loadConfig, resolveToken, tokenRequired } from '../src/server/config';
import { memoryLogger } from '../src/server/log';
import { Pipeline, PipelineSettings, roiToPixels } from '../src/server/pipeline';
import { MM_TO_PT, printPageSize } from '../src/server/print';
import { validateSettings } from '../src/server/schema';
import { createGpio, MemoryDriver } from '../src/gpio';
import { SyntheticScene } from '../src/capture/synthetic';
import type { Frame } from '../src/capture/types';
import { parsePrometheus } from './prometheus';

interface FrameMsg {
  seq: number;
  width: number;
  height: number;
  clean: { classId: number; top5: { classId: number; p: number }[] };
  adversarial: { classId: number; top5: { classId: number; p: number }[] };
  fooled: boolean;
  attack: { name: string; eps: number; targeted: boolean; steps: number };
  latency: Record<string, number>;
  images: { frame: Buffer; cleanCrop: Buffer; perturbation: Buffer; adversarial: Buffer };
  label: { classId: number } | null;
}

interface Client {
  socket: Socket;
  frames: FrameMsg[];
  statuses: { state: string; message?: string }[];
  errors: { code: string; message: string }[];
  settings: PipelineSettings[];
  hello: Promise<Record<string, unknown>>;
}

function connect(url: string, opts: Parameters<typeof ioClient>[1] = {}): Client {
  const socket = ioClient(url, { transports: ['websocket'], reconnection: false, forceNew: true, ...opts });
  const c: Client = { socket, frames: [], statuses: [], errors: [], settings: [], hello: new Promise((r) => socket.once('hello', r)) };
  socket.on('frame', (f: FrameMsg, ack?: () => void) => {
    c.frames.push(f);
    ack?.();
  });
  socket.on('status', (s: { state: string }) => c.statuses.push(s));
  socket.on('error', (e: { code: string; message: string }) => c.errors.push(e));
  socket.on('settings', (s: PipelineSettings) => c.settings.push(s));
  return c;
}

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function emitAck<T = Record<string, unknown>>(s: Socket, event: string, ...args: unknown[]): Promise<T> {
  return s.timeout(5000).emitWithAck(event, ...args) as Promise<T>;
}

const TEST_CONFIG: ServeConfig = {
  ...DEFAULT_CONFIG,
  sources: [],
  ffmpegInputArgs: [],
  port: 0,
  source: 'synthetic',
  width: 160,
  height: 120,
  fps: 20,
  logLevel: 'silent',
  attack: 'fgsm',
  eps: 8 / 255,
  steps: 5,
  loss: 'ce',
};

describe('serve: daemon over socket.io and HTTP', function () {
  this.timeout(60000);
  let clf: LayersClassifier;
  let server: RunningServer;
  let dir: string;
  const log = memoryLogger('info');
  const board = new MemoryDriver();
  let gpio: ReturnType<typeof createGpio>;
  const clients: Client[] = [];
  const client = (opts?: Parameters<typeof ioClient>[1], url = server.url) => {
    const c = connect(url, opts);
    clients.push(c);
    return c;
  };

  before(async () => {
    await initBackend();
    clf = new LayersClassifier(buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43 }));
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'advsign-serve-'));
    const raw = Buffer.alloc(100 * 80 * 3, 90);
    await sharp(raw, { raw: { width: 100, height: 80, channels: 3 } })
      .jpeg()
      .toFile(path.join(dir, 'a.jpg'));
    gpio = createGpio({ button: 17, ledOk: 27, ledFooled: 22 }, { driver: board });
    server = await startServer({
      config: { ...TEST_CONFIG, snapshotDir: path.join(dir, 'snaps') },
      classifier: clf,
      logger: log,
      gpio,
      allowedSources: ['synthetic', `dir:${dir}`],
      limits: { print: [2, 1] },
    });
  });

  after(async () => {
    for (const c of clients) c.socket.disconnect();
    await server?.close();
    gpio?.close();
    clf?.model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('socket round trip: hello, then frames with both predictions, images and latencies', async () => {
    const c = client();
    const hello = await c.hello;
    assert.equal((hello.classes as string[]).length, 43);
    assert.ok((hello.sources as string[]).includes('synthetic'));
    await waitFor(() => c.frames.length >= 3, 15000, 'frames');
    const f = c.frames[c.frames.length - 1];
    assert.equal(f.width, 160);
    assert.equal(f.clean.top5.length, 5);
    assert.equal(f.adversarial.top5.length, 5);
    assert.ok(f.clean.top5[0].p >= f.clean.top5[4].p);
    assert.equal(f.attack.name, 'fgsm');
    assert.ok(Math.abs(f.attack.eps - 8 / 255) < 1e-9);
    assert.equal(typeof f.fooled, 'boolean');
    assert.equal(typeof f.label?.classId, 'number');
    for (const k of ['capture', 'preprocess', 'classify', 'attack', 'encode', 'total']) {
      assert.ok(Number.isFinite(f.latency[k]) && f.latency[k] >= 0, k);
    }
    assert.ok(f.latency.total >= f.latency.attack);
    assert.deepEqual([...f.images.frame.subarray(0, 2)], [0xff, 0xd8], 'frame is a JPEG');
    for (const png of [f.images.cleanCrop, f.images.perturbation, f.images.adversarial]) {
      assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
      const m = await sharp(png).metadata();
      assert.equal(m.width, 32);
    }
    // The adversarial input differs from the clean one by at most eps.
    const [a, b] = await Promise.all([f.images.cleanCrop, f.images.adversarial].map((p) => sharp(p).raw().toBuffer()));
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    assert.ok(maxDiff > 0 && maxDiff <= 9, `max difference ${maxDiff}/255`);
  });

  it('a slow client gets recent frames, never a backlog', async () => {
    const c = client();
    const got: number[] = [];
    let pendingAck: (() => void) | null = null;
    c.socket.off('frame');
    c.socket.on('frame', (f: FrameMsg, ack: () => void) => {
      got.push(f.seq);
      pendingAck = ack; // do not ack yet
    });
    await waitFor(() => got.length >= 2, 10000, 'first frames');
    const before = got.length;
    await new Promise((r) => setTimeout(r, 600)); // ~12 frames produced meanwhile
    assert.equal(got.length, before, 'nothing more is sent until the client acks');
    const seqNow = server.daemon.last!.seq;
    (pendingAck as unknown as () => void)();
    await waitFor(() => got.length > before, 5000, 'frame after ack');
    assert.ok(got[got.length - 1] >= seqNow - 1, `the next frame is a recent one (${got[got.length - 1]} vs ${seqNow})`);
    c.socket.disconnect();
  });

  it('switches attack, eps, targeting and steps by socket messages', async () => {
    const c = client();
    await c.hello;
    const r1 = await emitAck<{ ok: boolean; settings: PipelineSettings }>(c.socket, 'settings', { eps: 4 / 255 });
    assert.equal(r1.ok, true);
    assert.ok(Math.abs(r1.settings.eps - 4 / 255) < 1e-9);
    await waitFor(() => c.settings.some((s) => Math.abs(s.eps - 4 / 255) < 1e-9), 3000, 'settings broadcast');
    await waitFor(() => c.frames.some((f) => Math.abs(f.attack.eps - 4 / 255) < 1e-9), 10000, 'frames at eps 4/255');

    const r2 = await emitAck<{ ok: boolean; settings: PipelineSettings }>(c.socket, 'settings', { attack: 'bim', steps: 3, targeted: true, target: 1 });
    assert.equal(r2.ok, true);
    await waitFor(() => c.frames.some((f) => f.attack.name === 'bim' && f.attack.steps === 3 && f.attack.targeted), 10000, 'bim frames');

    const r3 = await emitAck<{ ok: boolean; settings: PipelineSettings; notes?: string[] }>(c.socket, 'settings', { eps: 1 });
    assert.ok(Math.abs(r3.settings.eps - EPS_MAX) < 1e-9, 'eps clamped to 32/255');
    assert.match(r3.notes![0], /clamped/);

    await emitAck(c.socket, 'settings', { attack: 'none', targeted: false, eps: 8 / 255 });
    await waitFor(() => c.frames.some((f) => f.attack.name === 'none'), 10000, 'frames without attack');
    const off = c.frames.filter((f) => f.attack.name === 'none').pop()!;
    assert.equal(off.fooled, false);
    assert.deepEqual(off.adversarial.top5, off.clean.top5);
    await emitAck(c.socket, 'settings', { attack: 'fgsm' });
  });

  it('pause freezes the frame and re-runs it when the settings change', async () => {
    const c = client();
    await waitFor(() => c.frames.length >= 1, 10000, 'frames');
    await emitAck(c.socket, 'settings', { paused: true });
    await new Promise((r) => setTimeout(r, 300));
    const seq = server.daemon.last!.seq;
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(server.daemon.last!.seq, seq, 'no new frame while paused');
    const n = c.frames.length;
    await emitAck(c.socket, 'settings', { eps: 2 / 255 });
    await waitFor(() => c.frames.slice(n).some((f) => f.seq === seq && Math.abs(f.attack.eps - 2 / 255) < 1e-9), 5000, 'same frame re-attacked');
    await emitAck(c.socket, 'settings', { paused: false, eps: 8 / 255 });
    await waitFor(() => server.daemon.last!.seq > seq, 5000, 'frames resume');
  });

  it('switches source by socket message, only to offered sources', async () => {
    const c = client();
    await c.hello;
    const bad = await emitAck<{ ok: boolean; error: string }>(c.socket, 'source', { source: 'ffmpeg:/etc/passwd' });
    assert.equal(bad.ok, false);
    assert.match(bad.error, /not offered/);
    const ok = await emitAck<{ ok: boolean }>(c.socket, 'source', { source: `dir:${dir}` });
    assert.equal(ok.ok, true);
    await waitFor(() => c.frames.some((f) => f.width === 100 && f.height === 80), 10000, 'frames from the folder');
    await waitFor(() => c.statuses.some((s) => s.state === 'running'), 5000, 'running status');
    assert.equal(server.daemon.sourceSpec, `dir:${dir}`);
    const back = await emitAck<{ ok: boolean }>(c.socket, 'source', { source: 'synthetic' });
    assert.equal(back.ok, true);
    await waitFor(() => c.frames.some((f) => f.width === 160), 10000, 'synthetic frames again');
  });

  it('rejects malformed, unknown, binary and oversized messages without crashing', async () => {
    const c = client();
    await c.hello;
    const cases: [string, unknown[], RegExp][] = [
      ['settings', ['eps=8'], /must be an object/],
      ['settings', [{ eps: 'a lot' }], /finite number/],
      ['settings', [{ epsilon: 0.1 }], /unknown settings key/],
      ['settings', [{ target: 43 }], /class id/],
      ['settings', [{ attack: 'cw' }], /attack must be/],
      ['settings', [{ steps: 1000 }], /steps/],
      ['settings', [{ roi: { x: 0, y: 0, w: 0, h: 1 } }], /roi/],
      ['settings', [{ roi: { x: 0, y: 0, w: 0.5, h: 0.5, z: 1 } }], /exactly x, y, w, h/],
      ['settings', [{}], /empty/],
      ['settings', [{ eps: 0.01 }, { eps: 0.02 }], /exactly one argument/],
      ['settings', [{ __proto__: { paused: true } }], /empty|unknown/],
      ['settings', [{ roi: { x: 0, y: 0, w: 0.5, h: 0.5 }, attack: 'x'.repeat(3000) }], /exceeds/],
      ['settings', [Buffer.alloc(10)], /binary/],
      ['source', [{ source: 'synthetic', extra: 1 }], /exactly the key source/],
      ['rm -rf', [{}], /unknown event/],
      ['__proto__', [{}], /unknown event/],
      ['error', [{}], /unknown event/],
    ];
    for (const [event, args, re] of cases) {
      const res = await emitAck<{ ok: boolean; error: string }>(c.socket, event, ...args);
      assert.equal(res.ok, false, `${event} ${JSON.stringify(args).slice(0, 80)}`);
      assert.match(res.error, re, `${event}: ${res.error}`);
    }
    // Without an ack the answer is an 'error' event.
    c.socket.emit('nonsense', 1);
    await waitFor(() => c.errors.some((e) => e.code === 'unknown_event'), 3000, 'error event');
    // Bigger than socket.io's 16 kB transport limit: the connection is cut, the daemon carries on.
    const big = client();
    await big.hello;
    const closed = new Promise((r) => big.socket.once('disconnect', r));
    big.socket.emit('settings', { roi: 'x'.repeat(40_000) });
    await closed;
    const n = c.frames.length;
    await waitFor(() => c.frames.length > n + 2, 10000, 'frames still flowing to the other client');
    const health = (await (await fetch(`${server.url}healthz`)).json()) as { ok: boolean };
    assert.equal(health.ok, true);
    assert.ok(Math.abs(server.daemon.settings.eps - 8 / 255) < 1e-9, 'nothing was applied');
  });

  it('ROI from the client: nudged inside the frame and used for the crop', async () => {
    const c = client();
    await c.hello;
    const res = await emitAck<{ ok: boolean; settings: PipelineSettings }>(c.socket, 'settings', { roi: { x: 0.9, y: 0, w: 0.25, h: 0.5 } });
    assert.equal(res.ok, true);
    assert.ok(Math.abs(res.settings.roi!.x - 0.75) < 1e-9);
    await waitFor(() => server.daemon.last!.roi.x === 120 && server.daemon.last!.roi.w === 40, 5000, 'roi applied');
    await emitAck(c.socket, 'settings', { roi: null });
    assert.deepEqual(roiToPixels(null, 160, 120), { x: 38, y: 18, w: 84, h: 84 });
  });

  it('/healthz and /metrics', async () => {
    const h = (await (await fetch(`${server.url}healthz`)).json()) as Record<string, unknown>;
    assert.equal(h.ok, true);
    assert.equal((h.source as { state: string }).state, 'running');
    assert.ok((h.frames as number) > 0);
    assert.ok((h.uptime as number) >= 0);
    const m = (await (await fetch(`${server.url}metrics.json`)).json()) as Record<string, unknown>;
    for (const k of ['fps', 'fooledRate', 'rssMB', 'numTensors', 'clients', 'frames', 'dropped']) assert.equal(typeof m[k], 'number', k);
    const lat = m.latency as Record<string, { p50: number; p95: number }>;
    for (const s of ['capture', 'preprocess', 'classify', 'attack', 'encode', 'total']) {
      assert.ok(lat[s].p95 >= lat[s].p50, s);
    }
    assert.ok((m.fps as number) > 0);
    const asJson = await fetch(`${server.url}metrics`, { headers: { accept: 'application/json' } });
    assert.match(asJson.headers.get('content-type') ?? '', /^application\/json/);
    assert.equal(typeof ((await asJson.json()) as { frames: unknown }).frames, 'number');
  });

  it('/metrics is Prometheus text (what a scraper asks for), with the JSON figures', async () => {
    const res = await fetch(`${server.url}metrics`, {
      headers: { accept: 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1' },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    const samples = parsePrometheus(await res.text());
    const later = (await (await fetch(`${server.url}metrics.json`)).json()) as { frames: number };
    const frames = samples.get('advsign_frames_total')!;
    assert.ok(frames > 0 && frames <= later.frames, `frames ${frames}, then ${later.frames} in the JSON`);
    assert.ok(Number.isInteger(samples.get('advsign_clients')) && samples.get('advsign_clients')! >= 1);
    assert.equal(samples.get('advsign_source_up{source="synthetic",state="running"}'), 1);
    for (const stage of ['capture', 'preprocess', 'classify', 'attack', 'encode', 'total']) {
      const p50 = samples.get(`advsign_stage_latency_seconds{stage="${stage}",quantile="0.5"}`)!,
        p95 = samples.get(`advsign_stage_latency_seconds{stage="${stage}",quantile="0.95"}`)!;
      assert.ok(p50 >= 0 && p95 >= p50 && p95 < 60, `${stage}: ${p50} ${p95}`);
    }
    assert.ok(samples.get('process_resident_memory_bytes')! > 1e6);
  });

  it('/api/print returns a PDF with the sign at exactly the requested size', async () => {
    const res = await fetch(`${server.url}api/print?size_mm=150`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/pdf');
    const pdf = Buffer.from(await res.arrayBuffer());
    assert.equal(pdf.subarray(0, 5).toString('latin1'), '%PDF-');
    const box = /\/MediaBox \[([^\]]+)\]/.exec(pdf.toString('latin1'))![1].trim().split(/\s+/).map(Number);
    const page = printPageSize(150);
    assert.deepEqual(box.slice(0, 2), [0, 0]);
    assert.ok(Math.abs(box[2] - page.widthPt) < 0.01 && Math.abs(box[3] - page.heightPt) < 0.01, `MediaBox ${box}`);
    assert.ok(Math.abs(page.widthMm - (150 + 24)) < 1e-9);
    assert.equal(printPageSize(20).widthMm, 100, 'room for the caption beside a small sign');
    // The image is drawn with a 150 mm × 150 mm transform (pdfkit: "w 0 0 -h x y cm" before "/I1 Do").
    const contents = [...pdf.toString('latin1').matchAll(/stream\r?\n/g)].map((m) => {
      const start = m.index! + m[0].length;
      const end = pdf.indexOf('endstream', start);
      try {
        return zlib.inflateSync(pdf.subarray(start, end)).toString('latin1');
      } catch {
        return '';
      }
    });
    const draw = contents.find((c) => /\/I\d+ Do/.test(c))!;
    const cm = /([\d.]+) 0 0 (-?[\d.]+) ([\d.]+) ([\d.]+) cm\s*\/I\d+ Do/.exec(draw)!;
    const side = 150 * MM_TO_PT;
    assert.ok(Math.abs(Number(cm[1]) - side) < 0.01, `image width ${cm[1]} pt, want ${side}`);
    assert.ok(Math.abs(Math.abs(Number(cm[2])) - side) < 0.01);
    assert.ok(draw.includes('Tj') || draw.includes('TJ'), 'caption and scale bar text');

    assert.equal((await fetch(`${server.url}api/print?size_mm=5`)).status, 400);
    assert.equal((await fetch(`${server.url}api/print?size_mm=abc`)).status, 400);
    // Rate limited (burst 2 in this test): the third in a row is refused.
    await fetch(`${server.url}api/print?size_mm=100`);
    const limited = await fetch(`${server.url}api/print?size_mm=100`);
    assert.equal(limited.status, 429);
    assert.ok(Number(limited.headers.get('retry-after')) > 0);
  });

  it('/api/snapshot.png returns the three panels as a PNG', async () => {
    const res = await fetch(`${server.url}api/snapshot.png`);
    assert.equal(res.status, 200);
    const png = Buffer.from(await res.arrayBuffer());
    const m = await sharp(png).metadata();
    assert.equal(m.format, 'png');
    assert.ok(m.width! > 3 * 300);
  });

  it('serves the page and the socket.io client locally, with a strict CSP', async () => {
    const page = await fetch(server.url);
    assert.equal(page.status, 200);
    const html = await page.text();
    assert.ok(html.includes('/socket.io/socket.io.js'));
    assert.ok(!/https?:\/\//.test(html.replace(/<!--[\s\S]*?-->/g, '')), 'no external URL in the page');
    assert.match(page.headers.get('content-security-policy')!, /default-src 'self'/);
    for (const f of ['/socket.io/socket.io.js', '/app.js', '/style.css']) assert.equal((await fetch(server.url + f.slice(1))).status, 200, f);
    const cross = await fetch(`${server.url}metrics`, { headers: { origin: 'http://evil.example' } });
    assert.equal(cross.status, 403);
    // DNS rebinding: fetch() will not forge Host, so a raw request does.
    const status = await new Promise<number>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: server.port, path: '/metrics', headers: { host: 'evil.example:8080' } }, (r) => {
          r.resume();
          resolve(r.statusCode!);
        })
        .on('error', reject);
    });
    assert.equal(status, 421);
  });

  it('drives the LEDs and takes button presses', async () => {
    await waitFor(() => board.values.get(27) === 1 || board.values.get(22) === 1, 5000, 'an LED on');
    const fooled = server.daemon.last!.fooled;
    assert.equal(board.values.get(fooled ? 22 : 27), 1);
    gpio.simulatePress('short');
    assert.equal(server.daemon.settings.attack, 'none');
    await waitFor(() => board.values.get(27) === 1 && board.values.get(22) === 0, 5000, 'green with the attack off');
    gpio.simulatePress('short');
    assert.equal(server.daemon.settings.attack, 'fgsm');
    gpio.simulatePress('long');
    await waitFor(() => fs.existsSync(path.join(dir, 'snaps')) && fs.readdirSync(path.join(dir, 'snaps')).length === 1, 5000, 'snapshot file');
  });

  it('logs structured JSON lines with a level', () => {
    assert.ok(log.lines.length > 0);
    for (const l of log.lines) {
      assert.equal(typeof l.ts, 'string');
      assert.ok(['debug', 'info', 'warn', 'error'].includes(l.level as string));
      assert.equal(typeof l.event, 'string');
    }
    assert.ok(log.lines.some((l) => l.event === 'settings.changed'));
    assert.ok(log.lines.some((l) => l.event === 'source.switch'));
  });
});

describe('serve: access token', function () {
  this.timeout(60000);
  let clf: LayersClassifier;
  let server: RunningServer;
  const TOKEN = 'correct-horse-battery';

  before(async () => {
    await initBackend();
    clf = new LayersClassifier(buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43 }));
    // Binding beyond loopback needs a token; the logic is tested by forcing it on 127.0.0.1.
    server = await startServer({ config: { ...TEST_CONFIG, requireToken: true, token: TOKEN, fps: 5 }, classifier: clf });
  });
  after(async () => {
    await server?.close();
    clf?.model.dispose();
  });

  it('decides when a token is required and generates one', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]']) assert.equal(isLoopback(h), true, h);
    for (const h of ['0.0.0.0', '::', '192.168.1.20', 'pi.local']) assert.equal(isLoopback(h), false, h);
    assert.equal(tokenRequired({ host: '0.0.0.0', requireToken: false }), true);
    assert.equal(tokenRequired({ host: '127.0.0.1', requireToken: false }), false);
    assert.equal(tokenRequired({ host: '127.0.0.1', requireToken: true }), true);
    const g = resolveToken({ host: '0.0.0.0', requireToken: false, token: null });
    assert.equal(g.generated, true);
    assert.ok(g.token!.length >= 20);
    assert.deepEqual(resolveToken({ host: '127.0.0.1', requireToken: false, token: null }), { token: null, generated: false });
    assert.throws(() => loadConfig({ flags: { token: 'short' }, env: {}, file: null }), /at least 12/);
  });

  it('HTTP: 401 without, cookie after ?token=, header accepted, healthz open', async () => {
    assert.equal(server.token, TOKEN);
    assert.equal((await fetch(server.url)).status, 401);
    assert.equal((await fetch(`${server.url}metrics`)).status, 401);
    assert.equal((await fetch(`${server.url}api/print`)).status, 401);
    assert.equal((await fetch(`${server.url}?token=wrong-token-value`, { redirect: 'manual' })).status, 401);
    assert.equal((await fetch(`${server.url}healthz`)).status, 200);
    const r = await fetch(`${server.url}?token=${TOKEN}`, { redirect: 'manual' });
    assert.equal(r.status, 302);
    assert.equal(r.headers.get('location'), '/');
    const cookie = r.headers.get('set-cookie')!;
    assert.match(cookie, /advsign_token=/);
    assert.match(cookie, /HttpOnly/i);
    assert.match(cookie, /SameSite=Strict/i);
    assert.equal((await fetch(server.url, { headers: { cookie: cookie.split(';')[0] } })).status, 200);
    assert.equal((await fetch(`${server.url}metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
  });

  it('socket: refused without the token, accepted with it (handshake auth or cookie)', async () => {
    const bad = connect(server.url);
    const err = await new Promise<Error>((r) => bad.socket.once('connect_error', r));
    assert.equal(err.message, 'unauthorized');
    bad.socket.disconnect();
    const wrong = connect(server.url, { auth: { token: 'nope-nope-nope' } });
    assert.equal((await new Promise<Error>((r) => wrong.socket.once('connect_error', r))).message, 'unauthorized');
    wrong.socket.disconnect();
    const good = connect(server.url, { auth: { token: TOKEN } });
    await good.hello;
    good.socket.disconnect();
    const byCookie = connect(server.url, { extraHeaders: { cookie: `advsign_token=${TOKEN}` } });
    await byCookie.hello;
    byCookie.socket.disconnect();
    const crossSite = connect(server.url, { auth: { token: TOKEN }, extraHeaders: { origin: 'http://evil.example' } });
    await new Promise((r) => crossSite.socket.once('connect_error', r));
    crossSite.socket.disconnect();
  });
});

describe('serve: configuration', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'advsign-cfg-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('precedence: flags > environment > file > defaults', () => {
    const file = path.join(dir, 'config.json');
    fs.writeFileSync(file, JSON.stringify({ port: 9000, host: '0.0.0.0', source: 'dir:/srv/signs', eps: '4/255', gpio: { button: 17, ledOk: 27 } }));
    const { config, origins } = loadConfig({
      flags: { port: '9100', config: file },
      env: { ADVSIGN_PORT: '9200', ADVSIGN_HOST: '127.0.0.1', ADVSIGN_GPIO_LED_FOOLED: '22' },
    });
    assert.equal(config.port, 9100);
    assert.equal(origins.port, 'flag');
    assert.equal(config.host, '127.0.0.1');
    assert.equal(origins.host, 'env');
    assert.equal(config.source, 'dir:/srv/signs');
    assert.equal(origins.source, 'file');
    assert.ok(Math.abs(config.eps - 4 / 255) < 1e-12);
    assert.deepEqual([config.gpioButton, config.gpioLedOk, config.gpioLedFooled], [17, 27, 22]);
    assert.equal(config.attack, DEFAULT_CONFIG.attack);
    assert.equal(origins.attack, 'default');
    const none = loadConfig({ flags: {}, env: {}, defaultFile: path.join(dir, 'absent.json') });
    assert.equal(none.config.host, '127.0.0.1');
    assert.equal(none.file, null);
  });

  it('an active-low button from the file, the environment or a bare flag', () => {
    const file = path.join(dir, 'active-low.json');
    fs.writeFileSync(file, JSON.stringify({ gpio: { button: 17, buttonActiveLow: true } }));
    assert.equal(loadConfig({ file, env: {} }).config.gpioButtonActiveLow, true);
    assert.equal(loadConfig({ file, env: { ADVSIGN_GPIO_BUTTON_ACTIVE_LOW: 'no' } }).config.gpioButtonActiveLow, false);
    assert.equal(loadConfig({ flags: { 'gpio-button-active-low': true }, env: {}, file: null }).config.gpioButtonActiveLow, true);
    assert.equal(loadConfig({ flags: {}, env: {}, file: null }).config.gpioButtonActiveLow, false, 'default: active high');
    assert.throws(() => loadConfig({ flags: {}, env: { ADVSIGN_GPIO_BUTTON_ACTIVE_LOW: 'maybe' }, file: null }), /gpioButtonActiveLow must be true or false/);
  });

  it('one-line errors naming where a bad value came from', () => {
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, JSON.stringify({ prot: 80 }));
    assert.throws(() => loadConfig({ file: bad }), /unknown key prot/);
    fs.writeFileSync(bad, '{ not json');
    assert.throws(() => loadConfig({ file: bad }), /not valid JSON/);
    assert.throws(() => loadConfig({ flags: { port: '99999' }, env: {}, file: null }), /--port/);
    assert.throws(() => loadConfig({ flags: {}, env: { ADVSIGN_EPS: '64/255' }, file: null }), /ADVSIGN_EPS/);
    assert.throws(() => loadConfig({ flags: { attack: 'deepfool' }, env: {}, file: null }), /attack must be one of/);
    assert.throws(() => loadConfig({ flags: { roi: '0.5,0.5,0.9,0.9' }, env: {}, file: null }), /inside the frame/);
    assert.equal(loadConfig({ flags: { 'require-token': true }, env: {}, file: null }).config.requireToken, true);
    assert.equal(loadConfig({ flags: {}, env: { ADVSIGN_REQUIRE_TOKEN: 'yes' }, file: null }).config.requireToken, true);
  });

  it('validates client settings by hand-written rules', () => {
    const v = validateSettings({ eps: -1, attack: 'pgd' }, 43);
    assert.ok(v.ok && v.value.eps === 0 && v.value.attack === 'pgd');
    assert.equal(validateSettings({ target: 2.5 }, 43).ok, false);
    assert.equal(validateSettings({ eps: Number.NaN }, 43).ok, false);
    assert.equal(validateSettings(null, 43).ok, false);
    assert.equal(validateSettings([1], 43).ok, false);
  });

  it('redacts credentials in source URLs', () => {
    assert.equal(redact('ffmpeg:rtsp://admin:hunter2@10.0.0.5/stream'), 'ffmpeg:rtsp://***@10.0.0.5/stream');
  });
});

describe('serve: pipeline tensor hygiene', function () {
  this.timeout(120000);

  it('tf.memory().numTensors is flat over many frames (fgsm, bim, pgd, targeted, none)', async () => {
    await initBackend();
    const clf = new LayersClassifier(buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43 }));
    const pipe = new Pipeline(clf);
    const scene = new SyntheticScene({ width: 128, height: 96 });
    const frame = (i: number): Frame => {
      const { rgb, pose } = scene.render(i * 0.1);
      return { rgb, width: 128, height: 96, t: performance.now(), seq: i, decodeMs: 0, label: pose.classId };
    };
    const base: PipelineSettings = { attack: 'fgsm', eps: 8 / 255, targeted: false, target: 14, steps: 2, loss: 'ce', roi: null, paused: false };
    // Warm-up: first calls create lasting kernel state.
    for (const attack of ['fgsm', 'bim', 'pgd', 'mifgsm'] as const) await pipe.process(frame(0), { ...base, attack });
    const start = tf.memory().numTensors;
    const variants: PipelineSettings[] = [
      base,
      { ...base, attack: 'bim' },
      { ...base, attack: 'pgd' },
      { ...base, targeted: true },
      { ...base, attack: 'none' },
      { ...base, roi: { x: 0.1, y: 0.1, w: 0.5, h: 0.5 } },
      { ...base, eps: 0 },
      { ...base, loss: 'dlr' },
      { ...base, attack: 'pgd', loss: 'margin' },
    ];
    for (let i = 0; i < 70; i++) {
      const r = await pipe.process(frame(i), variants[i % variants.length]);
      assert.ok(r.linf <= variants[i % variants.length].eps + 1e-6, `linf ${r.linf}`);
    }
    assert.equal(tf.memory().numTensors, start, 'no tensor leaked');
    clf.model.dispose();
  });
});

export type { ServerOptions };
