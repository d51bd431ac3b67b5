/** /metrics' Prometheus text from a fixed snapshot: names, units, labels and escaping (the live server is in serve.test.ts). */
import * as assert from 'node:assert/strict';
import { prometheusText, ServerMetrics } from '../src/server/metrics-text';
import { STAGES } from '../src/server/stats';
import { parsePrometheus } from './prometheus';

function snapshot(over: Partial<ServerMetrics> = {}): ServerMetrics {
  const latency = Object.fromEntries(STAGES.map((s, i) => [s, { p50: i + 1, p95: 10 * (i + 1), mean: i + 2 }])) as ServerMetrics['latency'];
  return {
    fps: 24.5,
    frames: 1234,
    dropped: 7,
    fooledRate: 0.875,
    stickerFooledRate: null,
    stalledFrames: 3,
    latency,
    rssMB: 200,
    heapMB: 40.5,
    numTensors: 12,
    backend: 'wasm',
    uptime: 61.2,
    paused: false,
    source: { state: 'running', source: 'ffmpeg:rtsp://***@cam/"a"\\b', at: 0 },
    clients: 2,
    sessions: 5,
    ...over,
  };
}

describe('/metrics text format', () => {
  it('exposes every figure in Prometheus units, strictly parseable', () => {
    const m = parsePrometheus(prometheusText(snapshot(), '1.2.3'));
    assert.equal(m.get('advsign_frames_total'), 1234);
    assert.equal(m.get('advsign_frames_dropped_total'), 7);
    assert.equal(m.get('advsign_frames_stalled_total'), 3);
    assert.equal(m.get('advsign_frames_per_second'), 24.5);
    assert.equal(m.get('advsign_fooled_ratio'), 0.875);
    assert.equal(m.has('advsign_sticker_fooled_ratio'), false, 'no sticker: no sample');
    assert.equal(m.get('advsign_stage_latency_seconds{stage="classify",quantile="0.5"}'), 0.003);
    assert.equal(m.get('advsign_stage_latency_seconds{stage="total",quantile="0.95"}'), 0.06);
    assert.equal(m.get('advsign_clients'), 2);
    assert.equal(m.get('advsign_sessions'), 5);
    assert.equal(m.get('advsign_tf_tensors'), 12);
    assert.equal(m.get('advsign_paused'), 0);
    assert.equal(m.get('process_resident_memory_bytes'), 200 * 2 ** 20);
    assert.equal(m.get('advsign_uptime_seconds'), 61.2);
    assert.equal(m.get('advsign_build_info{version="1.2.3",backend="wasm"}'), 1);
    // Quotes and backslashes in a label value are escaped, so the line still parses.
    assert.equal(m.get('advsign_source_up{source="ffmpeg:rtsp://***@cam/\\"a\\"\\\\b",state="running"}'), 1);
  });

  it('a stopped source, a pause and a sticker show', () => {
    const m = parsePrometheus(prometheusText(snapshot({ paused: true, stickerFooledRate: 0.5, source: { state: 'lost', source: 'webcam', at: 0 } }), 'x'));
    assert.equal(m.get('advsign_source_up{source="webcam",state="lost"}'), 0);
    assert.equal(m.get('advsign_paused'), 1);
    assert.equal(m.get('advsign_sticker_fooled_ratio'), 0.5);
  });

  it('the reader used here refuses what a scraper would', () => {
    assert.throws(() => parsePrometheus('x 1\n'), /before its TYPE/);
    assert.throws(() => parsePrometheus('# TYPE x gauge\nx{a="b} 1\n'), /not a valid/);
    assert.throws(() => parsePrometheus('# TYPE x gauge\nx 1'), /newline/);
    assert.throws(() => parsePrometheus('{"fps": 1}\n'), /not a valid/);
  });
});
