/**
 * The PyTorch yardstick beside `advsign bench`: ../shared/bench/peer/torch_bench.py (the same CNN,
 * widths 24,48,128) run with Debian's /usr/bin/python3 when python3-torch is installed. Only
 * figures taken alternately in one run are compared (the machine is shared and noisy), and each
 * side keeps its best round.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { projectRoot } from './paths';

/** Images per second (FGSM at batch 1 also as ms per image), one side of the comparison. */
export interface PeerFigures {
  inferBatch1: number;
  inferBatch64: number;
  fgsmBatch1: number;
  fgsmBatch64: number;
  pgd10Batch1: number;
  pgd10Batch64: number;
  trainBatch64: number;
}

export const PEER_KEYS: readonly (keyof PeerFigures)[] = [
  'inferBatch1',
  'inferBatch64',
  'fgsmBatch1',
  'fgsmBatch64',
  'pgd10Batch1',
  'pgd10Batch64',
  'trainBatch64',
];

export interface PeerHarness {
  python: string;
  script: string;
  threads: number;
}

/** The harness when it and a python with torch are present, else why not. */
export function findPeerHarness(threads = 2): PeerHarness | string {
  const script = process.env.ADVSIGN_PEER_BENCH ?? path.join(projectRoot(), '..', 'shared', 'bench', 'peer', 'torch_bench.py');
  const python = process.env.ADVSIGN_PEER_PYTHON ?? '/usr/bin/python3';
  if (!fs.existsSync(script)) return `no PyTorch harness at ${script}`;
  if (!fs.existsSync(python)) return `no ${python}`;
  const probe = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8', timeout: 60_000 });
  if (probe.status !== 0) return `${python} has no torch (apt-get install python3-torch)`;
  return { python, script, threads };
}

interface TorchRow {
  op: string;
  batch: number;
  img_s: number;
}

/** One run of the harness (about a minute): its figures in our naming. */
export function runPeer(h: PeerHarness): Promise<PeerFigures> {
  return new Promise((resolve, reject) => {
    const child = spawn(h.python, [h.script, '--threads', String(h.threads), '--widths', '24,48,128'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '',
      err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`PyTorch harness exited with ${code}: ${err.trim().split('\n').pop() ?? ''}`));
      try {
        const rows = (JSON.parse(out) as { rows: TorchRow[] }).rows;
        const get = (op: string, b: number) => {
          const r = rows.find((x) => x.op === op && x.batch === b);
          if (!r) throw new Error(`PyTorch harness gave no ${op} at batch ${b}`);
          return r.img_s;
        };
        resolve({
          inferBatch1: get('infer', 1),
          inferBatch64: get('infer', 64),
          fgsmBatch1: get('fgsm', 1),
          fgsmBatch64: get('fgsm', 64),
          pgd10Batch1: get('pgd10', 1),
          pgd10Batch64: get('pgd10', 64),
          trainBatch64: get('train', 64),
        });
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  });
}

/** Per figure, the best of the rounds. */
export function bestOf(rounds: PeerFigures[]): PeerFigures {
  const best = { ...rounds[0] };
  for (const r of rounds) for (const k of PEER_KEYS) best[k] = Math.max(best[k], r[k]);
  return best;
}

export function ratios(ours: PeerFigures, peer: PeerFigures): PeerFigures {
  const out = { ...ours };
  for (const k of PEER_KEYS) out[k] = ours[k] / peer[k];
  return out;
}
