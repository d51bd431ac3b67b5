/**
 * The live loop on the native engine: `advsign serve --engine ort` streams attacked frames to a
 * socket client and says which engine it runs; the daemon analyses the next frame while the
 * previous one's images are being encoded.
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { io as ioClient } from 'socket.io-client';
import { initBackend } from '../src/inference/backend';
import { buildModel, LayersClassifier } from '../src/inference/model';
import { DEFAULT_CONFIG } from '../src/server/config';
import { Daemon } from '../src/server/daemon';
import { memoryLogger } from '../src/server/log';
import type { AnalysedFrame, FrameResult } from '../src/server/pipeline';
import { SyntheticSource } from '../src/capture/synthetic';
import { BIN, ROOT, waitFor } from './helpers';

describe('live loop on the native engine', function () {
  this.timeout(120000);

  it('advsign serve --engine ort: attacked frames reach a socket client; the log names the engine', async () => {
    const child = spawn(process.execPath, [BIN, 'serve', '--engine', 'ort', '--source', 'synthetic', '--port', '0', '--width', '160', '--height', '120'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    try {
      await waitFor(() => /advsign: open (\S+)/.test(out), 60000, 'the daemon to start');
      const loaded = out
        .split('\n')
        .filter((l) => l.includes('"model.loaded"'))
        .map((l) => JSON.parse(l) as { engine: string; engineReason: string })[0];
      assert.equal(loaded.engine, 'ort', out);
      assert.match(loaded.engineReason, /onnxruntime-node/);
      const url = /advsign: open (\S+)/.exec(out)![1];
      const sock = ioClient(url, { transports: ['websocket'], reconnection: false, forceNew: true });
      const frames: { adversarial: { classId: number }; attack: { name: string; error?: string }; latency: { attack: number } }[] = [];
      sock.on('frame', (f: (typeof frames)[number], ack?: () => void) => {
        frames.push(f);
        ack?.();
      });
      await waitFor(() => frames.length >= 5, 30000, 'five frames');
      sock.disconnect();
      for (const f of frames) {
        assert.equal(f.attack.name, DEFAULT_CONFIG.attack);
        assert.equal(f.attack.error, undefined);
        assert.ok(f.latency.attack > 0);
      }
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, out.slice(-2000));
  });

  it('the daemon analyses the next frame while the previous one is being encoded, and publishes in order', async () => {
    await initBackend();
    const clf = new LayersClassifier(buildModel({ arch: 'cnn4-small', inputSize: 32, numClasses: 43 }));
    const daemon = new Daemon({
      config: { ...DEFAULT_CONFIG, source: 'synthetic', attack: 'fgsm' },
      classifier: clf,
      logger: memoryLogger('warn'),
      sourceFactory: () => new SyntheticSource({ width: 96, height: 72, fps: 60 }),
    });
    const events: { what: 'analyse' | 'encoded'; seq: number }[] = [];
    const p = daemon.pipeline;
    const analyse = p.analyse.bind(p),
      encode = p.encode.bind(p);
    p.analyse = async (f, s, at) => {
      events.push({ what: 'analyse', seq: f.seq });
      return analyse(f, s, at);
    };
    // A slow encoder: without the overlap every frame would wait for it.
    p.encode = async (a: AnalysedFrame): Promise<FrameResult> => {
      await new Promise((r) => setTimeout(r, 80));
      const r = await encode(a);
      events.push({ what: 'encoded', seq: a.frame.seq });
      return r;
    };
    const published: number[] = [];
    daemon.on('result', (r: FrameResult) => published.push(r.seq));
    await daemon.start();
    await waitFor(() => published.length >= 6, 30000, 'six results');
    await daemon.stop();
    clf.model.dispose();
    assert.deepEqual(
      published,
      [...published].sort((a, b) => a - b),
      'results in frame order',
    );
    // Some frame's analysis started before the frame analysed just before it was encoded.
    let previous = -1,
      overlapped = false;
    const encoded = new Set<number>();
    for (const e of events) {
      if (e.what === 'encoded') encoded.add(e.seq);
      else {
        if (previous >= 0 && !encoded.has(previous)) overlapped = true;
        previous = e.seq;
      }
    }
    assert.ok(overlapped, JSON.stringify(events.slice(0, 12)));
  });
});
