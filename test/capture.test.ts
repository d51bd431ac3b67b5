import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import sharp from 'sharp';
import { parseSourceSpec, resolveAuto, which, specToString, createSource } from '../src/capture/factory';
import { ffmpegArgs, FfmpegSource, inputKind } from '../src/capture/ffmpeg';
import { SyntheticScene, SyntheticSource } from '../src/capture/synthetic';
import { DirectorySource } from '../src/capture/dir';
import { WebcamSource } from '../src/capture/webcam';
import { SupervisedSource } from '../src/capture/supervisor';
import { BaseSource } from '../src/capture/base';
import type { Frame, FrameSource, SourceStatus } from '../src/capture/types';

const HAVE_FFMPEG = which('ffmpeg') !== null;

function collect(src: FrameSource): { frames: Frame[]; statuses: SourceStatus[] } {
  const out = { frames: [] as Frame[], statuses: [] as SourceStatus[] };
  src.on('frame', (f) => out.frames.push(f));
  src.on('status', (s) => out.statuses.push(s));
  return out;
}

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function solid(w: number, h: number, rgb: [number, number, number]): sharp.Sharp {
  const raw = Buffer.alloc(w * h * 3);
  for (let i = 0; i < w * h; i++) raw.set(rgb, i * 3);
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } });
}

describe('capture: source specs', () => {
  it('parses every documented form and rejects the rest', () => {
    assert.deepEqual(parseSourceSpec('auto'), { kind: 'auto' });
    assert.deepEqual(parseSourceSpec('synthetic'), { kind: 'synthetic' });
    assert.deepEqual(parseSourceSpec('webcam'), { kind: 'webcam' });
    assert.deepEqual(parseSourceSpec('webcam:/dev/video2'), { kind: 'webcam', device: '/dev/video2' });
    assert.deepEqual(parseSourceSpec('ffmpeg:rtsp://cam/stream'), { kind: 'ffmpeg', input: 'rtsp://cam/stream' });
    assert.deepEqual(parseSourceSpec('dir:./photos'), { kind: 'dir', path: './photos' });
    assert.deepEqual(parseSourceSpec('video:a:b.mp4'), { kind: 'video', file: 'a:b.mp4' });
    for (const bad of ['', 'camera', 'ffmpeg:', 'webcam:/etc/passwd', 'webcam:/dev/video0;rm', 'synthetic:x']) {
      assert.throws(() => parseSourceSpec(bad), /source|device|input/, bad);
    }
    assert.equal(specToString({ kind: 'ffmpeg', input: '-' }), 'ffmpeg:-');
  });

  it('auto picks a camera with ffmpeg, else fswebcam, else the synthetic scene', () => {
    assert.deepEqual(resolveAuto({ cameras: ['/dev/video0'], hasFfmpeg: true, hasFswebcam: true }).spec, { kind: 'ffmpeg', input: '/dev/video0' });
    assert.deepEqual(resolveAuto({ cameras: ['/dev/video1'], hasFfmpeg: false, hasFswebcam: true }).spec, { kind: 'webcam', device: '/dev/video1' });
    assert.deepEqual(resolveAuto({ cameras: ['/dev/video0'], hasFfmpeg: false, hasFswebcam: false }).spec, { kind: 'synthetic' });
    assert.deepEqual(resolveAuto({ cameras: [], hasFfmpeg: true, hasFswebcam: true }).spec, { kind: 'synthetic' });
  });

  it('builds ffmpeg command lines per input kind (no shell involved)', () => {
    assert.equal(inputKind('testsrc'), 'lavfi');
    assert.equal(inputKind('/dev/video0'), 'v4l2');
    assert.equal(inputKind('rtsp://x/y'), 'rtsp');
    assert.equal(inputKind('http://x/y.mjpg'), 'url');
    assert.equal(inputKind('-'), 'stdin');
    assert.equal(inputKind('clip.mp4'), 'file');
    const lavfi = ffmpegArgs({ input: 'testsrc', width: 640, height: 480, fps: 30 });
    assert.ok(lavfi.includes('testsrc=size=640x480:rate=30'));
    assert.ok(lavfi.includes('-re'), 'a test pattern is paced like a camera');
    const v4l2 = ffmpegArgs({ input: '/dev/video0', width: 320, height: 240, fps: 15 });
    assert.deepEqual(v4l2.slice(v4l2.indexOf('-f'), v4l2.indexOf('-f') + 2), ['-f', 'v4l2']);
    const file = ffmpegArgs({ input: 'clip.mp4', loop: true });
    assert.ok(file.join(' ').includes('-stream_loop -1'));
    const stdin = ffmpegArgs({ input: '-' });
    assert.ok(stdin.includes('pipe:0') && !stdin.includes('-nostdin'));
    for (const a of [lavfi, v4l2, file, stdin]) assert.deepEqual(a.slice(-3), ['-f', 'image2pipe', 'pipe:1']);
  });
});

describe('capture: synthetic scene', function () {
  this.timeout(20000);

  it('renders a moving, relit sign on a background, cycling classes', () => {
    const scene = new SyntheticScene({ width: 160, height: 120, secondsPerClass: 2, classes: [14, 1] });
    const a = scene.render(0);
    const b = scene.render(0.7);
    assert.equal(a.rgb.length, 160 * 120 * 3);
    assert.equal(a.pose.classId, 14);
    assert.equal(scene.render(2.1).pose.classId, 1);
    assert.equal(scene.render(4.1).pose.classId, 14);
    assert.ok(!a.rgb.equals(b.rgb), 'the scene moves');
    assert.notEqual(scene.pose(0).cx, scene.pose(3).cx);
    assert.notEqual(scene.pose(0).light, scene.pose(5).light);
    // Deterministic: same time, same image.
    assert.ok(scene.render(1.234).rgb.equals(new SyntheticScene({ width: 160, height: 120, secondsPerClass: 2, classes: [14, 1] }).render(1.234).rgb));
  });

  it('emits frames at its rate with the true class', async () => {
    const src = new SyntheticSource({ width: 96, height: 72, fps: 20 });
    const got = collect(src);
    await src.start();
    await waitFor(() => got.frames.length >= 5, 5000, 'synthetic frames');
    await src.stop();
    const f = got.frames[0];
    assert.equal(f.width, 96);
    assert.equal(f.height, 72);
    assert.equal(f.rgb.length, 96 * 72 * 3);
    assert.equal(typeof f.label, 'number');
    assert.deepEqual(
      got.frames.slice(0, 5).map((x) => x.seq),
      [0, 1, 2, 3, 4],
    );
    assert.deepEqual(
      got.statuses.map((s) => s.state),
      ['starting', 'running', 'stopped'],
    );
  });
});

describe('capture: folder replay', function () {
  this.timeout(20000);
  let dir: string;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'advsign-dir-'));
    await solid(40, 30, [255, 0, 0]).jpeg().toFile(path.join(dir, 'a1.jpg'));
    await solid(20, 20, [0, 255, 0]).png().toFile(path.join(dir, 'a2.png'));
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'not an image');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('loops over the images in name order, passing JPEGs through', async () => {
    const src = new DirectorySource({ dir, fps: 50 });
    const got = collect(src);
    await src.start();
    await waitFor(() => got.frames.length >= 5, 5000, 'folder frames');
    await src.stop();
    assert.deepEqual(
      got.frames.slice(0, 4).map((f) => `${f.width}x${f.height}`),
      ['40x30', '20x20', '40x30', '20x20'],
    );
    assert.ok(got.frames[0].jpeg && got.frames[0].jpeg[0] === 0xff);
    assert.equal(got.frames[1].jpeg, undefined);
    assert.ok(got.frames[0].rgb[0] > 200 && got.frames[0].rgb[1] < 60, 'red');
  });

  it('reports lost, naming the folder, when no image in it decodes (instead of "starting" forever)', async () => {
    const junk = fs.mkdtempSync(path.join(os.tmpdir(), 'advsign-junk-'));
    fs.writeFileSync(path.join(junk, 'a.jpg'), 'not a jpeg');
    fs.writeFileSync(path.join(junk, 'b.png'), Buffer.alloc(64, 1));
    try {
      const src = new DirectorySource({ dir: junk, fps: 50 });
      const got = collect(src);
      await src.start();
      await waitFor(() => got.statuses.some((s) => s.state === 'lost'), 3000, 'lost');
      await src.stop();
      const lost = got.statuses.find((s) => s.state === 'lost')!;
      assert.match(lost.message!, /no decodable image in .*advsign-junk-.* \(2 tried; a\.jpg: /);
      assert.equal(got.frames.length, 0);
    } finally {
      fs.rmSync(junk, { recursive: true, force: true });
    }
  });

  it('reports lost when the folder does not exist', async () => {
    const src = new DirectorySource({ dir: path.join(dir, 'missing') });
    const got = collect(src);
    await src.start();
    await waitFor(() => got.statuses.some((s) => s.state === 'lost'), 3000, 'lost');
    await src.stop();
    assert.match(got.statuses.find((s) => s.state === 'lost')!.message!, /not found/);
  });
});

describe('capture: node-webcam (fswebcam)', function () {
  this.timeout(20000);
  let bin: string;
  let oldPath: string | undefined;

  before(async () => {
    // A stand-in fswebcam: copies a JPEG to the location node-webcam asks for (its last argument).
    bin = fs.mkdtempSync(path.join(os.tmpdir(), 'advsign-fswebcam-'));
    const shot = path.join(bin, 'shot.jpg');
    await solid(64, 48, [0, 0, 255]).jpeg().toFile(shot);
    fs.writeFileSync(path.join(bin, 'fswebcam'), `#!/bin/sh\nfor last; do :; done\ncp '${shot}' "$last"\n`, { mode: 0o755 });
    oldPath = process.env.PATH;
    process.env.PATH = `${bin}${path.delimiter}${oldPath ?? ''}`;
  });
  after(() => {
    process.env.PATH = oldPath;
    fs.rmSync(bin, { recursive: true, force: true });
  });

  it('takes stills through node-webcam and decodes them', async () => {
    const src = new WebcamSource({ width: 64, height: 48, fps: 20 });
    const got = collect(src);
    await src.start();
    await waitFor(() => got.frames.length >= 2, 8000, 'webcam frames');
    await src.stop();
    const f = got.frames[0];
    assert.equal(`${f.width}x${f.height}`, '64x48');
    assert.ok(f.rgb[2] > 200, 'blue');
    assert.ok(f.jpeg);
  });

  it('refuses device names that are not /dev/videoN (node-webcam uses a shell)', () => {
    assert.throws(() => new WebcamSource({ device: '/dev/video0; reboot' }), /videoN/);
  });
});

class FlakySource extends BaseSource {
  timer: NodeJS.Timeout | null = null;
  constructor(
    readonly dieAfter: number,
    readonly final = false,
  ) {
    super('flaky');
  }
  async start(): Promise<void> {
    this.setStatus('starting');
    let n = 0;
    this.timer = setInterval(() => {
      if (++n > this.dieAfter) {
        clearInterval(this.timer!);
        this.setStatus('lost', this.final ? 'stdin ended' : 'unplugged', undefined, this.final);
        return;
      }
      this.emitFrame({ rgb: Buffer.alloc(12), width: 2, height: 2, t: performance.now(), decodeMs: 0 });
    }, 10);
  }
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.setStatus('stopped');
  }
}

describe('capture: supervisor', function () {
  this.timeout(20000);

  it('does not restart a source that cannot come back (a closed stdin pipe): its final status passes on', async () => {
    let made = 0;
    const sup = new SupervisedSource(
      () => {
        made++;
        return new FlakySource(2, true);
      },
      'pipe',
      { backoffMs: 20, stallMs: 0 },
    );
    const got = collect(sup);
    await sup.start();
    await waitFor(() => got.statuses.some((st) => st.final), 3000, 'final status');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(made, 1, 'no retry');
    const last = got.statuses[got.statuses.length - 1];
    assert.deepEqual([last.state, last.final, last.message], ['lost', true, 'stdin ended']);
    await sup.stop();
  });

  it('restarts a lost source with backoff and keeps one frame sequence', async () => {
    let made = 0;
    const sup = new SupervisedSource(
      () => {
        made++;
        return new FlakySource(3);
      },
      'flaky',
      { backoffMs: 30, maxBackoffMs: 60, stallMs: 0 },
    );
    const got = collect(sup);
    await sup.start();
    await waitFor(() => made >= 3 && got.frames.length >= 7, 5000, 'restarts');
    await sup.stop();
    const states = got.statuses.map((s) => s.state);
    assert.ok(states.includes('lost') && states.includes('retrying') && states.includes('running'), states.join(','));
    const seqs = got.frames.map((f) => f.seq);
    assert.deepEqual(
      seqs,
      seqs.map((_, i) => i),
      'sequence continues across restarts',
    );
    assert.equal(states[states.length - 1], 'stopped');
  });

  it('treats a silent source as lost (stall watchdog)', async () => {
    const sup = new SupervisedSource(() => new FlakySource(1e9), 'silent', { backoffMs: 30, stallMs: 150 });
    const got = collect(sup);
    await sup.start();
    await waitFor(() => got.frames.length > 0, 3000, 'first frame');
    // Freeze the inner source without it saying anything.
    const inner = sup.current as FlakySource;
    clearInterval(inner.timer!);
    await waitFor(() => got.statuses.some((s) => s.state === 'lost' && /no frame/.test(s.message ?? '')), 3000, 'stall');
    await sup.stop();
  });
});

(HAVE_FFMPEG ? describe : describe.skip)('capture: ffmpeg', function () {
  this.timeout(30000);

  it('streams a lavfi test pattern at camera rate, split and decoded', async () => {
    const src = new FfmpegSource({ input: 'testsrc', width: 320, height: 240, fps: 25 });
    const got = collect(src);
    await src.start();
    await waitFor(() => got.frames.length >= 3, 10000, 'first ffmpeg frames');
    const n0 = got.frames.length;
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 1000));
    const rate = (got.frames.length - n0) / ((performance.now() - t0) / 1000);
    await src.stop();
    const f = got.frames[0];
    assert.equal(`${f.width}x${f.height}`, '320x240');
    assert.ok(f.jpeg && f.jpeg[0] === 0xff && f.jpeg[1] === 0xd8);
    assert.ok(rate > 8 && rate < 40, `about 25 fps, got ${rate.toFixed(1)}`);
    assert.equal(src.pid, undefined, 'ffmpeg is gone after stop()');
    assert.equal(got.statuses[got.statuses.length - 1].state, 'stopped');
  });

  it('reads MJPEG from a pipe directly (rpicam-vid --codec mjpeg -o - | advsign serve --source ffmpeg:-)', async () => {
    const input = new PassThrough();
    const src = new FfmpegSource({ input: '-', stdin: input, width: 64, height: 48 });
    const got = collect(src);
    await src.start();
    const frame = await solid(64, 48, [200, 100, 50]).jpeg().toBuffer();
    const feeder = setInterval(() => input.write(frame), 20);
    await waitFor(() => got.frames.length >= 3, 5000, 'frames from stdin');
    clearInterval(feeder);
    assert.equal(src.pid, undefined, 'MJPEG on stdin needs no ffmpeg');
    await src.stop();
    assert.equal(got.frames[0].width, 64);
    assert.ok(got.frames[0].jpeg!.equals(frame), 'the camera JPEG is passed through untouched');
    assert.ok(Math.abs(got.frames[0].rgb[0] - 200) < 12);
  });

  it('pipes other formats on stdin through ffmpeg (e.g. a GStreamer y4m stream)', async () => {
    const { execFileSync } = await import('node:child_process');
    const y4m = execFileSync('ffmpeg', [
      '-hide_banner',
      '-loglevel',
      'error',
      '-f',
      'lavfi',
      '-i',
      'testsrc=size=96x64:rate=20',
      '-t',
      '3',
      '-pix_fmt',
      'yuv420p',
      '-f',
      'yuv4mpegpipe',
      '-',
    ]);
    const input = new PassThrough();
    const src = new FfmpegSource({ input: '-', stdin: input, width: 96, height: 64 });
    const got = collect(src);
    await src.start();
    // Fed progressively, like a live pipeline (a burst would be decoded latest-wins: few frames).
    const step = Math.ceil(y4m.length / 20);
    for (let i = 0; i < y4m.length; i += step) {
      input.write(y4m.subarray(i, i + step));
      await new Promise((r) => setTimeout(r, 40));
    }
    input.end();
    await waitFor(() => got.frames.length >= 2, 10000, 'frames via ffmpeg');
    // At the end of the pipe ffmpeg exits, and the source says it cannot come back.
    await waitFor(() => got.statuses.some((st) => st.final), 10000, 'final status after stdin ended');
    assert.match(got.statuses.find((st) => st.final)!.message!, /stdin ended/);
    await src.stop();
    assert.equal(`${got.frames[0].width}x${got.frames[0].height}`, '96x64');
  });

  it('replays a video file in a loop, at its own rate (video:<file>)', async () => {
    const { execFileSync } = await import('node:child_process');
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'advsign-video-'));
    const file = path.join(tmp, 'clip.avi');
    execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc=size=128x96:rate=20', '-t', '0.5', '-c:v', 'mjpeg', file]);
    const { source } = createSource(`video:${file}`, { width: 128, height: 96, fps: 20, supervisor: { stallMs: 0 } });
    const got = collect(source);
    await source.start();
    await waitFor(() => got.frames.length >= 25, 10000, 'more frames than the clip has (looping)');
    await source.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
    assert.equal(got.frames[0].width, 128);
    assert.ok(!got.statuses.some((s) => s.state === 'lost'), 'the end of the clip is not a lost source');
  });

  it('reports lost when ffmpeg dies, and the supervisor brings it back', async () => {
    const { source } = createSource('ffmpeg:testsrc', { width: 160, height: 120, fps: 20, supervisor: { backoffMs: 100, stallMs: 0 } });
    const got = collect(source);
    await source.start();
    await waitFor(() => got.frames.length >= 3, 10000, 'first frames');
    const pid = (source.current as FfmpegSource).pid!;
    process.kill(pid, 'SIGKILL');
    await waitFor(() => got.statuses.some((s) => s.state === 'lost'), 5000, 'lost');
    const n = got.frames.length;
    await waitFor(() => got.frames.length >= n + 3, 10000, 'frames after recovery');
    assert.notEqual((source.current as FfmpegSource).pid, pid);
    await source.stop();
    const lost = got.statuses.find((s) => s.state === 'lost')!;
    assert.match(lost.message ?? '', /SIGKILL/);
  });
});
