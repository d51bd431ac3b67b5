import * as assert from 'node:assert/strict';
import { io as ioClient } from 'socket.io-client';
import { initBackend } from '../src/inference/backend';
import { buildModel, LayersClassifier } from '../src/inference/model';
import { startServer, RunningServer } from '../src/server/app';
import { DEFAULT_CONFIG } from '../src/server/config';
import { which } from '../src/capture/factory';
import type { FfmpegSource } from '../src/capture/ffmpeg';
import type { SupervisedSource } from '../src/capture/supervisor';
import { liveChildren } from '../src/capture/children';

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('serve: the camera vanishing mid-stream', function () {
  this.timeout(60000);
  let clf: LayersClassifier;
  let server: RunningServer;

  before(async function () {
    if (!which('ffmpeg')) this.skip();
    await initBackend();
    clf = new LayersClassifier(buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43 }));
    server = await startServer({
      config: { ...DEFAULT_CONFIG, sources: [], ffmpegInputArgs: [], port: 0, source: 'ffmpeg:testsrc', width: 320, height: 240, fps: 15, logLevel: 'silent' },
      classifier: clf,
      capture: { supervisor: { backoffMs: 200, maxBackoffMs: 1000, stallMs: 3000 } },
    });
  });
  after(async () => {
    await server?.close();
    clf?.model.dispose();
  });

  it("ffmpeg killed → 'lost' reaches the page, the daemon retries, frames resume", async () => {
    const socket = ioClient(server.url, { transports: ['websocket'], reconnection: false, forceNew: true });
    const frames: number[] = [];
    const statuses: { state: string; message?: string }[] = [];
    socket.on('frame', (f: { seq: number; width: number }, ack: () => void) => {
      frames.push(f.seq);
      ack();
    });
    socket.on('status', (s: { state: string; message?: string }) => statuses.push(s));
    try {
      await waitFor(() => frames.length >= 5, 20000, 'frames from ffmpeg');
      const sup = server.daemon.source as SupervisedSource;
      const pid = (sup.current as FfmpegSource).pid!;
      assert.ok(pid > 0);
      process.kill(pid, 'SIGKILL'); // the camera is unplugged
      await waitFor(() => statuses.some((s) => s.state === 'lost'), 5000, "'lost' on the socket");
      const lost = statuses.find((s) => s.state === 'lost')!;
      assert.match(lost.message ?? '', /ffmpeg killed by SIGKILL/);
      const health = (await (await fetch(`${server.url}healthz`)).json()) as { ok: boolean; source: { state: string } };
      assert.ok(['lost', 'retrying', 'starting', 'running'].includes(health.source.state));
      const n = frames.length;
      await waitFor(() => frames.length >= n + 5, 20000, 'frames after recovery');
      const states = statuses.map((s) => s.state);
      const iLost = states.indexOf('lost');
      assert.ok(states.slice(iLost).includes('retrying'), states.join(' → '));
      assert.equal(states[states.length - 1], 'running', states.join(' → '));
      assert.notEqual((sup.current as FfmpegSource).pid, pid, 'a new ffmpeg');
      assert.ok(sup.restarts >= 1);
      assert.equal(((await (await fetch(`${server.url}healthz`)).json()) as { ok: boolean }).ok, true);
    } finally {
      socket.disconnect();
    }
  });

  it('closing the server stops ffmpeg', async () => {
    const before = liveChildren();
    assert.ok(before >= 1);
    await server.close();
    assert.equal(liveChildren(), 0);
  });
});

describe('serve: the command as a process (signals, token print, JSON logs)', function () {
  this.timeout(60000);

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal}: closes the server, stops ffmpeg, frees tensors, exits 0`, async function () {
      if (!which('ffmpeg')) this.skip();
      const { spawn, execFileSync } = await import('node:child_process');
      const path = await import('node:path');
      const entry = path.join(__dirname, '..', 'src', 'cli', 'serve.js');
      const child = spawn(
        process.execPath,
        [
          '-e',
          `require(${JSON.stringify(entry)}).serveCommand(process.argv.slice(1)).then(() => {}, (e) => { console.error(e.message); process.exitCode = 2; })`,
          '--',
          '--model',
          'untrained:cnn4-small',
          '--source',
          'ffmpeg:testsrc',
          '--width',
          '160',
          '--height',
          '120',
          '--fps',
          '10',
          '--port',
          '0',
          '--require-token',
          '--log-level',
          'info',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
      });
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      await waitFor(() => /open http:\/\/127\.0\.0\.1:\d+\/\?token=/.test(out), 30000, 'the address with its token on stdout');
      const url = /open (http:\/\/127\.0\.0\.1:\d+\/)\?token=(\S+)/.exec(out)!;
      assert.equal((await fetch(url[1])).status, 401, 'the page needs the printed token');
      assert.equal((await fetch(`${url[1]}metrics`, { headers: { authorization: `Bearer ${decodeURIComponent(url[2])}` } })).status, 200);
      let ok = false;
      const t0 = Date.now();
      while (!ok && Date.now() - t0 < 20000) {
        ok = ((await (await fetch(`${url[1]}healthz`)).json()) as { ok: boolean }).ok;
        if (!ok) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(ok, 'frames flowing');
      const ffmpegPids = execFileSync('pgrep', ['-P', String(child.pid)])
        .toString()
        .trim()
        .split('\n')
        .map(Number);
      assert.ok(ffmpegPids.length >= 1);
      child.kill(signal);
      assert.equal(await exited, 0, err.slice(-500));
      for (const pid of ffmpegPids) assert.throws(() => process.kill(pid, 0), /ESRCH/, `ffmpeg ${pid} is gone`);
      const lines = err
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { level: string; event: string; numTensors?: number });
      assert.ok(lines.every((l) => typeof l.level === 'string' && typeof l.event === 'string'));
      assert.ok(!err.includes(decodeURIComponent(url[2])), 'the token never appears in the logs');
      const done = lines.find((l) => l.event === 'shutdown.done')!;
      assert.equal(done.numTensors, 0);
      assert.ok(!lines.some((l) => l.event === 'source.status' && l.level === 'warn'), 'no lost camera reported at shutdown');
    });
  }
});

describe('serve: a camera pipe on stdin that closes', function () {
  this.timeout(90000);

  it('advsign serve --source ffmpeg:- exits with status 75 when stdin ends, so systemd restarts the pipeline', async () => {
    const { spawn } = await import('node:child_process');
    const path = await import('node:path');
    const sharp = (await import('sharp')).default;
    const root = path.resolve(__dirname, '..', '..');
    const child = spawn(
      process.execPath,
      [path.join(root, 'bin', 'advsign.js'), 'serve', '--source', 'ffmpeg:-', '--port', '0', '--width', '64', '--height', '48'],
      { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    await waitFor(() => out.includes('advsign: open'), 60000, 'the daemon to start');
    const frame = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 200, g: 30, b: 30 } } })
      .jpeg()
      .toBuffer();
    for (let i = 0; i < 5; i++) {
      child.stdin.write(frame);
      await new Promise((r) => setTimeout(r, 50));
    }
    await waitFor(() => out.includes('"state":"running"'), 10000, 'frames from stdin');
    child.stdin.end();
    const code = await exited;
    assert.equal(code, 75, out.slice(-2000));
    assert.match(out, /"source.ended"|source\.ended/);
    assert.match(out, /shutdown\.done/);
  });
});
