/**
 * The camera streams people actually send: H.264 (rpicam-vid's default, Jetson pipelines, IP
 * cameras), MPEG-TS and MJPEG, piped into stdin and served over HTTP, encoded live by a real
 * ffmpeg. Each must give frames soon after it starts.
 */
import * as assert from 'node:assert/strict';
import { execFileSync, spawn, ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { FfmpegSource } from '../src/capture/ffmpeg';
import { which } from '../src/capture/factory';
import { BIN, ROOT } from './helpers';

type Format = 'h264' | 'mpegts' | 'mjpeg';

const ENCODE: Record<Format, string[]> = {
  h264: ['-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-f', 'h264'],
  mpegts: ['-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-f', 'mpegts'],
  mjpeg: ['-c:v', 'mjpeg', '-q:v', '5', '-f', 'mjpeg'],
};
const CONTENT_TYPE: Record<Format, string> = { h264: 'video/h264', mpegts: 'video/mp2t', mjpeg: 'multipart/x-mixed-replace; boundary=ffmpeg' };

/** A live camera stand-in: ffmpeg encoding a test pattern in real time to stdout. */
function camera(format: Format, seconds: number, http = false): ChildProcess {
  const enc = format === 'mjpeg' && http ? ['-c:v', 'mjpeg', '-q:v', '5', '-f', 'mpjpeg'] : ENCODE[format];
  return spawn(
    'ffmpeg',
    ['-hide_banner', '-loglevel', 'error', '-re', '-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=15', '-t', String(seconds), ...enc, '-'],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
}

/** Frames FfmpegSource delivers from `input` while the stream lasts. */
async function framesFrom(input: string, stdin: NodeJS.ReadableStream | undefined, ms: number): Promise<{ n: number; firstMs: number | null; size: string }> {
  const src = new FfmpegSource({ input, width: 160, height: 120, fps: 15, stdin });
  const t0 = performance.now();
  let n = 0;
  let firstMs: number | null = null;
  let size = '';
  src.on('frame', (f: { width: number; height: number }) => {
    n++;
    firstMs ??= performance.now() - t0;
    size = `${f.width}x${f.height}`;
  });
  src.on('error', () => undefined);
  await src.start();
  await new Promise((r) => setTimeout(r, ms));
  await src.stop();
  return { n, firstMs, size };
}

describe('capture: live H.264, MPEG-TS and MJPEG streams through ffmpeg', function () {
  this.timeout(60000);
  let server: http.Server;
  let base = '';
  const cameras: ChildProcess[] = [];

  before(async function () {
    // Debian's ffmpeg has libx264; a build without it cannot make the H.264 camera stand-in.
    if (!which('ffmpeg') || !execFileSync('ffmpeg', ['-hide_banner', '-encoders']).toString().includes('libx264')) this.skip();
    server = http.createServer((req, res) => {
      const format = req.url!.slice(1) as Format;
      const cam = camera(format, 4, true);
      cameras.push(cam);
      res.writeHead(200, { 'content-type': CONTENT_TYPE[format] });
      cam.stdout!.pipe(res);
      res.on('close', () => cam.kill());
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    for (const c of cameras) c.kill();
    server?.close();
  });

  it('stdin and HTTP: every format gives frames within a second or two, at about the camera rate', async () => {
    const cases = (['h264', 'mpegts', 'mjpeg'] as const).flatMap((format) => [
      {
        name: `${format} on stdin`,
        run: () => {
          const cam = camera(format, 4);
          cameras.push(cam);
          return framesFrom('-', cam.stdout!, 4500);
        },
      },
      { name: `${format} over HTTP`, run: () => framesFrom(`${base}/${format}`, undefined, 4500) },
    ]);
    // Run together: six 4-second streams in ~5 s rather than 30.
    const results = await Promise.all(cases.map((c) => c.run()));
    const report = cases.map((c, i) => `${c.name}: ${results[i].n} frames, first after ${results[i].firstMs?.toFixed(0)} ms`).join('; ');
    for (const [i, r] of results.entries()) {
      // 4 s at 15 fps = 60 frames; a loaded machine may lose some to start-up and latest-wins decoding.
      assert.ok(r.n >= 20, `${cases[i].name}: ${r.n} frames (${report})`);
      assert.ok(r.firstMs !== null && r.firstMs < 3000, `${cases[i].name}: first frame after ${r.firstMs} ms (${report})`);
      // MJPEG on stdin is split without ffmpeg (no transcoding): it keeps the camera's size.
      assert.equal(r.size, cases[i].name === 'mjpeg on stdin' ? '320x240' : '160x120', cases[i].name);
    }
  });

  it('`camera | advsign serve --source ffmpeg:-` with H.264: frames, then exit 75 when the pipe closes', async () => {
    const cam = camera('h264', 8);
    cameras.push(cam);
    const serve = spawn(
      process.execPath,
      [BIN, 'serve', '--source', 'ffmpeg:-', '--model', 'untrained:cnn4-small', '--port', '0', '--width', '160', '--height', '120', '--log-level', 'info'],
      { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    cam.stdout!.pipe(serve.stdin!);
    let err = '';
    serve.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const code = await new Promise<number | null>((r) => serve.once('exit', r));
    const lines = err
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string; frames?: number });
    const stopped = lines.find((l) => l.event === 'daemon.stopped');
    assert.equal(code, 75, err.slice(-400));
    assert.ok(stopped && (stopped.frames ?? 0) >= 20, `frames processed: ${stopped?.frames} (${err.slice(-400)})`);
  });
});
