/**
 * "Before vs after": clean accuracy, FGSM and PGD-10 accuracy at each eps (plain and adaptive),
 * IBP-certified accuracy and detector AUC for several models and defenses, as one table (JSON and
 * HTML with an inline SVG plot). Called by `advsign evaluate --compare … --defense …`.
 *
 * Definitions: accuracy = share of the n images whose (defended) prediction equals the label. For
 * the detector, the system either classifies or rejects: a clean image counts when classified
 * correctly and not rejected, an attacked one when classified correctly or rejected (threshold
 * 0.5). Plain = defense-oblivious attack on `plainTarget`; adaptive = aimed through the defense
 * (see defended.ts). Certified = IBP proves the label for the whole eps box (model rows only).
 */
import * as path from 'node:path';
import { tf, Tensor4D } from '../inference/tf';
import type { Classifier, LayersClassifier } from '../inference/model';
import type { ImageSet } from '../data/types';
import { attackDefended, DefendedModel, defendedPredict } from './defended';
import { certify } from '../inference/ibp';
import { rocAuc } from './detector';
import { buildDefense, DefenseContext, DefenseName } from './registry';
import { escapeXml as esc, lineChartSvg } from '../util/svg-chart';

export interface CompareModel {
  /** Label (usually the model folder). */
  label: string;
  clf: LayersClassifier;
  /** The same model on the engine that attacks and predicts (`--engine`; default clf itself). */
  run?: Classifier;
  /** Defenses to wrap around this model ('none' at least). */
  defenses: DefenseName[];
  context: DefenseContext;
}

export interface CompareCell {
  attack: 'fgsm' | 'pgd';
  eps: number;
  plain: number;
  /** Null when the adaptive attack is the plain one (no defense to aim through). */
  adaptive: number | null;
  /** Detector rows: ROC AUC clean vs attacked, for the plain and the adaptive attack. */
  aucPlain?: number;
  aucAdaptive?: number;
}

export interface CompareRow {
  model: string;
  defense: DefenseName;
  title: string;
  clean: number;
  cells: CompareCell[];
  /** eps → certified accuracy (IBP), for 'none' and 'ibp' rows. */
  certified: { eps: number; accuracy: number }[] | null;
  /** Detector rows: share of clean images rejected. */
  cleanRejected?: number;
  seconds: number;
}

export interface CompareResult {
  n: number;
  epsList: number[];
  pgdSteps: number;
  rows: CompareRow[];
}

export interface CompareOptions {
  epsList: number[];
  pgdSteps?: number;
  batchSize?: number;
  seed?: number;
  log?: (msg: string) => void;
}

function slice(set: ImageSet, i: number, m: number): { x: Tensor4D; y: Int32Array } {
  const px = set.size * set.size * 3;
  return { x: tf.tensor4d(set.images.subarray(i * px, (i + m) * px), [m, set.size, set.size, 3]), y: set.labels.subarray(i, i + m) };
}

async function rejectScores(d: DefendedModel, x: Tensor4D): Promise<Float32Array | null> {
  return d.detector ? d.detector.scores(x) : null;
}

/** Correct (and, with a detector, rejected-or-correct for attacked / correct-and-kept for clean). */
function countOk(pred: Int32Array, y: Int32Array, scores: Float32Array | null, attacked: boolean): number {
  let ok = 0;
  for (let i = 0; i < y.length; i++) {
    const correct = pred[i] === y[i];
    const rejected = scores ? scores[i] > 0.5 : false;
    if (attacked ? correct || rejected : correct && !rejected) ok++;
  }
  return ok;
}

export async function runCompare(models: CompareModel[], set: ImageSet, o: CompareOptions): Promise<CompareResult> {
  const bs = o.batchSize ?? 64;
  const steps = o.pgdSteps ?? 10;
  const eps = o.epsList.filter((e) => e > 0);
  const rows: CompareRow[] = [];
  // Plain attacks depend only on the attacked classifier: shared by every defense in front of it.
  const plainCache = new Map<Classifier, Map<string, Float32Array>>();
  for (const m of models) {
    for (const name of m.defenses) {
      const t0 = Date.now();
      const d = await buildDefense(name, m.clf, m.context, m.run);
      o.log?.(`${m.label} + ${name}: evaluating ${set.n} images`);
      let cache = plainCache.get(d.plainTarget);
      if (!cache) {
        cache = new Map();
        plainCache.set(d.plainTarget, cache);
      }
      const hasAdaptive = name !== 'none' && name !== 'ibp';
      const cells: CompareCell[] = [];
      for (const attack of ['fgsm', 'pgd'] as const) for (const e of eps) cells.push({ attack, eps: e, plain: 0, adaptive: hasAdaptive ? 0 : null });
      const certifiedOk = name === 'none' || name === 'ibp' ? eps.map(() => 0) : null;
      const cleanScores: number[] = [];
      const advScores = cells.map(() => ({ plain: [] as number[], adaptive: [] as number[] }));
      let cleanOk = 0,
        rejected = 0;
      for (let i = 0; i < set.n; i += bs) {
        const mcount = Math.min(bs, set.n - i);
        const { x, y } = slice(set, i, mcount);
        const yt = tf.tensor1d(y, 'int32');
        const cs = await rejectScores(d, x);
        cleanOk += countOk(await defendedPredict(d, x), y, cs, false);
        if (cs) {
          cs.forEach((v) => {
            cleanScores.push(v);
            if (v > 0.5) rejected++;
          });
        }
        for (let c = 0; c < cells.length; c++) {
          const cell = cells[c];
          for (const adaptive of hasAdaptive ? [false, true] : [false]) {
            let adv: Tensor4D;
            const key = `${cell.attack}@${cell.eps}@${i}`;
            const hit = !adaptive ? cache.get(key) : undefined;
            if (hit) adv = tf.tensor4d(hit, x.shape);
            else {
              adv = await attackDefended(d, x, yt, { attack: cell.attack, eps: cell.eps, steps, adaptive, seed: (o.seed ?? 0) + i });
              if (!adaptive) cache.set(key, Float32Array.from(await adv.data()));
            }
            const sc = await rejectScores(d, adv);
            const ok = countOk(await defendedPredict(d, adv), y, sc, true);
            if (adaptive) cell.adaptive = (cell.adaptive ?? 0) + ok;
            else cell.plain += ok;
            if (sc) (adaptive ? advScores[c].adaptive : advScores[c].plain).push(...sc);
            adv.dispose();
          }
        }
        if (certifiedOk) {
          for (let k = 0; k < eps.length; k++) {
            const cert = await certify((m.clf as LayersClassifier).model, x, Int32Array.from(y), eps[k]);
            cert.forEach((v) => {
              certifiedOk[k] += v;
            });
          }
        }
        x.dispose();
        yt.dispose();
      }
      for (let c = 0; c < cells.length; c++) {
        const cell = cells[c];
        cell.plain /= set.n;
        if (cell.adaptive != null) cell.adaptive /= set.n;
        if (d.detector) {
          cell.aucPlain = rocAuc(advScores[c].plain, cleanScores);
          cell.aucAdaptive = rocAuc(advScores[c].adaptive, cleanScores);
        }
      }
      const row: CompareRow = {
        model: m.label,
        defense: name,
        title: d.title,
        clean: cleanOk / set.n,
        cells,
        certified: certifiedOk ? eps.map((e, k) => ({ eps: e, accuracy: certifiedOk[k] / set.n })) : null,
        seconds: (Date.now() - t0) / 1000,
      };
      if (d.detector) row.cleanRejected = rejected / set.n;
      rows.push(row);
      o.log?.(
        `  clean ${(row.clean * 100).toFixed(1)}%  ` +
          cells
            .map((c) => `${c.attack}@${Math.round(c.eps * 255)} ${(c.plain * 100).toFixed(1)}${c.adaptive != null ? '/' + (c.adaptive * 100).toFixed(1) : ''}`)
            .join('  ') +
          (row.certified ? '  certified ' + row.certified.map((c) => (c.accuracy * 100).toFixed(1)).join('/') : ''),
      );
    }
  }
  return { n: set.n, epsList: eps, pgdSteps: steps, rows };
}

const pct = (v: number | null | undefined) => (v == null || Number.isNaN(v) ? '–' : (v * 100).toFixed(1));
const epsLabel = (e: number) => `${+(e * 255).toFixed(2)}/255`;

/** PGD accuracy (adaptive when there is one: the honest figure) against eps, one line per row. */
export function compareSvg(r: CompareResult): string {
  const pgd = (row: CompareRow, e: number) => {
    const c = row.cells.find((cc) => cc.attack === 'pgd' && cc.eps === e);
    return c ? (c.adaptive ?? c.plain) : null;
  };
  return lineChartSvg({
    title: `PGD-${r.pgdSteps} accuracy against ε for each defense`,
    width: 640,
    height: 320,
    legendWidth: 200,
    xLabel: `PGD-${r.pgdSteps} ε (L∞); adaptive attack where one exists`,
    xTicks: [0, ...r.epsList].map((e) => ({ x: e, label: e === 0 ? 'clean' : epsLabel(e) })),
    series: r.rows.map((row) => ({
      name: `${path.basename(row.model)} + ${row.defense}`,
      points: [
        { x: 0, y: row.clean },
        ...r.epsList.map((e) => {
          const y = pgd(row, e);
          return { x: e, y, tip: `${row.defense} ${epsLabel(e)}: ${pct(y)} %` };
        }),
      ],
    })),
  });
}

export function compareTableHtml(r: CompareResult): string {
  const head = [
    'model',
    'defense',
    'clean',
    ...r.epsList.map((e) => `FGSM ${epsLabel(e)}`),
    ...r.epsList.map((e) => `PGD-${r.pgdSteps} ${epsLabel(e)}`),
    ...r.epsList.map((e) => `certified ${epsLabel(e)}`),
    'detector AUC (PGD, max ε)',
  ];
  const cell = (c: CompareCell | undefined) => (c ? `${pct(c.plain)}${c.adaptive != null ? ` <small>/ ${pct(c.adaptive)}</small>` : ''}` : '–');
  let s = '<table><thead><tr>' + head.map((h) => `<th>${esc(h)}</th>`).join('') + '</tr></thead><tbody>';
  for (const row of r.rows) {
    const find = (a: string, e: number) => row.cells.find((c) => c.attack === a && c.eps === e);
    const last = find('pgd', r.epsList[r.epsList.length - 1]);
    s +=
      `<tr><td>${esc(path.basename(row.model))}</td><td title="${esc(row.title)}">${esc(row.defense)}</td><td>${pct(row.clean)}</td>` +
      r.epsList.map((e) => `<td>${cell(find('fgsm', e))}</td>`).join('') +
      r.epsList.map((e) => `<td>${cell(find('pgd', e))}</td>`).join('') +
      r.epsList.map((e) => `<td>${pct(row.certified?.find((c) => c.eps === e)?.accuracy)}</td>`).join('') +
      `<td>${last?.aucPlain != null ? `${last.aucPlain.toFixed(3)} / ${last.aucAdaptive?.toFixed(3)}` : '–'}</td></tr>`;
  }
  return s + '</tbody></table>';
}

export function renderCompareHtml(
  r: CompareResult,
  meta: { data: string; split: string; backend: string; defenseTraining?: { seconds: number; images: number } },
): string {
  const trained = meta.defenseTraining
    ? ` The autoencoder, detector and distilled model trained for at most ${meta.defenseTraining.seconds} s each on ${meta.defenseTraining.images} training images.`
    : '';
  return `<!doctype html><html><head><meta charset="utf-8"><title>advsign: before vs after</title>
<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:nth-child(-n+2){text-align:left}small{color:#a00}</style></head><body>
<h1>Before vs after: defenses</h1>
<p>${esc(meta.data)} (${esc(meta.split)}), ${r.n} images, backend ${esc(meta.backend)}. Accuracy in %; "a <small>/ b</small>": a = plain (defense-oblivious) attack,
b = adaptive attack aimed through the defense (BPDA for squeezing/median/JPEG, end-to-end for the autoencoder, logit margin for distillation, classifier+detector jointly).
Detector rows count an attacked image as defended when it is classified correctly or rejected, a clean one when classified correctly and not rejected.
Certified = proven by interval bound propagation for the whole ε box (a lower bound on robust accuracy).${trained}</p>
${compareTableHtml(r)}
<h2>PGD-${r.pgdSteps} accuracy against ε</h2>
${compareSvg(r)}
</body></html>
`;
}

export function compareToJson(r: CompareResult, meta: Record<string, unknown>): Record<string, unknown> {
  return { ...meta, n: r.n, epsList: r.epsList, pgdSteps: r.pgdSteps, rows: r.rows };
}
