/**
 * `/metrics` in the Prometheus text exposition format (version 0.0.4), which every scraper
 * reads; the same figures stay available as JSON at `/metrics.json`. Written by hand rather than
 * with prom-client: the figures already exist as one snapshot per request (daemon.metrics()),
 * so a registry of live collectors would only duplicate them, and the board gains no dependency.
 * Units follow Prometheus' conventions: seconds, bytes, ratios in [0, 1].
 */
import type { Metrics } from './daemon';
import { STAGES } from './stats';

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** What /metrics reports: the daemon's snapshot plus the socket counts the server keeps. */
export interface ServerMetrics extends Metrics {
  clients: number;
  sessions: number;
}

type Kind = 'gauge' | 'counter';

/** Label values escape backslash, double quote and newline (the format's only escapes). */
function labelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function sample(name: string, value: number, labels: Record<string, string> = {}): string {
  const l = Object.entries(labels)
    .map(([k, v]) => `${k}="${labelValue(v)}"`)
    .join(',');
  const v = Number.isFinite(value) ? String(value) : Number.isNaN(value) ? 'NaN' : value > 0 ? '+Inf' : '-Inf';
  return `${name}${l ? `{${l}}` : ''} ${v}`;
}

function family(name: string, kind: Kind, help: string, samples: string[]): string[] {
  return [`# HELP ${name} ${help}`, `# TYPE ${name} ${kind}`, ...samples];
}

export function prometheusText(m: ServerMetrics, version: string): string {
  const one = (name: string, kind: Kind, help: string, value: number): string[] => family(name, kind, help, [sample(name, value)]);
  const latency = STAGES.flatMap((stage) => [
    sample('advsign_stage_latency_seconds', m.latency[stage].p50 / 1000, { stage, quantile: '0.5' }),
    sample('advsign_stage_latency_seconds', m.latency[stage].p95 / 1000, { stage, quantile: '0.95' }),
  ]);
  const lines = [
    ...family('advsign_build_info', 'gauge', 'advsign version and tfjs backend (always 1).', [
      sample('advsign_build_info', 1, { version, backend: m.backend }),
    ]),
    ...one('advsign_frames_total', 'counter', 'Frames processed since start.', m.frames),
    ...one('advsign_frames_dropped_total', 'counter', 'Frames replaced by a newer one before processing.', m.dropped),
    ...one('advsign_frames_stalled_total', 'counter', 'Frames where an attack that was on changed nothing.', m.stalledFrames),
    ...one('advsign_frames_per_second', 'gauge', 'Processing rate over the last two seconds.', m.fps),
    ...one('advsign_fooled_ratio', 'gauge', 'Share of recent frames fooled (by the attack, or by the virtual sticker with the attack off).', m.fooledRate),
    ...(m.stickerFooledRate === null
      ? []
      : one('advsign_sticker_fooled_ratio', 'gauge', 'Share of recent frames the virtual sticker fooled.', m.stickerFooledRate)),
    ...family('advsign_stage_latency_seconds', 'gauge', 'Per-stage latency percentiles over recent frames.', latency),
    ...family('advsign_source_up', 'gauge', 'Whether the frame source is running, with its (redacted) spec and state.', [
      sample('advsign_source_up', m.source.state === 'running' ? 1 : 0, { source: m.source.source, state: m.source.state }),
    ]),
    ...one('advsign_paused', 'gauge', 'Whether the pipeline is paused (1) or not (0).', m.paused ? 1 : 0),
    ...one('advsign_clients', 'gauge', 'Sockets that joined with the token.', m.clients),
    ...one('advsign_sessions', 'gauge', 'Open engine.io sessions (joined or not).', m.sessions),
    ...one('advsign_tf_tensors', 'gauge', 'Live TensorFlow.js tensors (flat when nothing leaks).', m.numTensors),
    ...one('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes.', Math.round(m.rssMB * 2 ** 20)),
    ...one('nodejs_heap_used_bytes', 'gauge', 'V8 heap in use in bytes.', Math.round(m.heapMB * 2 ** 20)),
    ...one('advsign_uptime_seconds', 'gauge', 'Seconds since the daemon started.', m.uptime),
  ];
  return lines.join('\n') + '\n';
}
