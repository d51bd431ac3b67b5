/**
 * The robustness sweep behind `advsign evaluate`: clean accuracy, then for every attack and eps
 * the accuracy under attack, the attack's success rate, perturbation norms, speed, per-class
 * accuracy, and a few example triples for the report.
 *
 * Definitions (also in the JSON):
 *   accuracy     over all n images: prediction on the attacked image equals the label;
 *   successRate  over the images classified correctly when clean: attacked prediction is wrong;
 *   meanL0/L2/Linf  over those successful images (null when there are none); L0 counts pixels;
 *   imagesPerSecond  images attacked per second of attack time (null when nothing ran).
 * eps = 0 means the clean images (nothing is run). Minimal-perturbation attacks (DeepFool, C&W,
 * L-BFGS, fooling images: `usesEps` false) run once per batch and are scored per eps the way
 * Foolbox does it: an example counts only if its perturbation, in the attack's own norm, is
 * ≤ eps (else the clean image stands). JSMA's L0 budget is its own (`maxFraction`), so its
 * result is the same for every eps > 0. L2 attacks get their own budgets (`l2EpsList`). Attacks
 * run untargeted.
 */
import * as path from 'node:path';
import { tf, Tensor4D } from '../inference/tf';
import { Classifier, measuredOn } from '../inference/model';
import { ImageSet, UserError } from '../data/types';
import type { Attack, AnyAttackOptions, Norm, RobustnessRow } from './types';

export type { RobustnessRow } from './types';
import { getAttack, isRegisteredAttack } from './registry';
import { normsFromArrays, PerturbationNorms } from './norms';
import { ModelWorkers } from '../inference/data-parallel';
import { inferLogits, LayersClassifier } from '../inference/model';
import { OrtClassifier } from '../inference/ort-classifier';
import { measureWritten } from './written';
import { CorrectFlags, worstCaseNorm, worstCaseRows } from './worst-case';

export interface EvaluateProgress {
  attack: string;
  /** Images attacked so far for this attack (all eps values of a batch count once). */
  done: number;
  total: number;
}

export interface EvaluateOptions {
  /** Registry names, or Attack objects (e.g. a transfer attack with its surrogate; these run on this thread). */
  attacks: (string | Attack)[];
  epsList: number[];
  batchSize: number;
  /** Evaluate only the first `limit` images. */
  limit?: number;
  onProgress?: (p: EvaluateProgress) => void;
  /** Extra options per attack name, e.g. { pgd: { steps: 20 }, square: { maxQueries: 500 } }. */
  attackOptions?: Record<string, AnyAttackOptions>;
  /** Example triples kept per attack, at its largest eps (default 4). */
  examplesPerAttack?: number;
  seed?: number;
  /**
   * Budgets for L2-norm attacks (PGD-L2, DeepFool, C&W, L-BFGS). An L∞ eps is meaningless as an
   * L2 radius (8/255 in L2 is almost nothing), so by default each eps is mapped to
   * eps · 16 · s/32: RobustBench's pairing of L∞ 8/255 with L2 0.5 for 32×32×3 images.
   */
  l2EpsList?: number[];
  /** Also report, per eps, the per-image worst case over all the attacks (one norm; RobustBench's count). */
  worstCase?: boolean;
  /**
   * Worker threads that attack batches alongside this one (data-parallel; only for models
   * loaded from files, i.e. a LayersClassifier, on tfjs or on onnxruntime). On onnxruntime every
   * thread, this one included, then runs sessions of one thread: the JavaScript of one batch's
   * attack overlaps the engine calls of another's, where one two-thread session leaves a core
   * idle during it. Results are the same as on one thread.
   */
  workers?: number;
}

/** L2 radius paired with an L∞ eps for s×s RGB images (8/255 ↔ 0.5 at 32×32). */
export function defaultL2Eps(eps: number, size: number): number {
  return (eps * 16 * size) / 32;
}

export interface AdversarialExample {
  attack: string;
  eps: number;
  index: number;
  label: number;
  cleanPrediction: number;
  cleanConfidence: number;
  adversarialPrediction: number;
  adversarialConfidence: number;
  success: boolean;
  size: number;
  /** size·size·3 floats in [0, 1], HWC. */
  clean: Float32Array;
  adversarial: Float32Array;
}

export interface RobustnessResult {
  n: number;
  numClasses: number;
  clean: { accuracy: number; perClassAccuracy: (number | null)[] };
  results: RobustnessRow[];
  examples: AdversarialExample[];
  /** Threads that attacked batches (1 + workers actually used). */
  threads?: number;
  /** What the attacks said about this model (e.g. fewer target classes than asked). */
  notes?: string[];
}

interface Acc {
  correct: number;
  cleanCorrect: number;
  fooled: number;
  l0: number;
  l2: number;
  linf: number;
  seconds: number;
  attacked: number;
  classCorrect: Int32Array;
  /** Per ensemble member: images it broke (in order), when the attack reports members. */
  stages: { attack: string; fooled: number; seconds: number }[];
  queries: number;
  successQueries: number;
  counted: boolean;
}

interface Predictions {
  pred: Int32Array;
  conf: Float32Array;
}

/** One shard attacked (here or in a worker): adversarial images, their predictions, the attack's time. */
export interface AttackedShard {
  adversarial: Float32Array;
  pred: Int32Array;
  conf: Float32Array;
  seconds: number;
  /** An ensemble's members and the images each broke first (AttackStage). */
  stages?: { attack: string; fooled: Uint8Array; seconds: number }[];
  /** Model queries per image (black-box attacks). */
  queries?: Int32Array;
}

/** What an evaluation worker attacks (attack-worker.ts): one shard of HWC images with its labels. */
export interface AttackTask {
  attack: string;
  options: AnyAttackOptions;
  x: Float32Array;
  y: Int32Array;
  size: number;
}

/** The evaluation pool: model workers that also attack shards. */
type AttackPool = ModelWorkers<AttackTask, AttackedShard>;

export async function predictWithConfidence(model: Classifier, x: Tensor4D): Promise<Predictions> {
  const z = await inferLogits(model, x);
  const [p, c] = tf.tidy(() => {
    const probs = tf.softmax(z);
    return [tf.argMax(probs, 1), tf.max(probs, 1)];
  });
  z.dispose();
  const out = { pred: Int32Array.from(await p.data()), conf: Float32Array.from(await c.data()) };
  p.dispose();
  c.dispose();
  return out;
}

/** attackShard in pool worker `i`; the shard's pixels are moved to the worker, not copied. */
function runInWorker(pool: AttackPool, i: number, t: AttackTask): Promise<AttackedShard> {
  return pool.run(i, t, [t.x.buffer as ArrayBuffer]);
}

/**
 * Attacks one shard of images (HWC floats in [0, 1]) and predicts on the result: the unit of
 * work of an evaluation, on this thread or in a model worker. Gradient attacks run on `model`,
 * black-box ones on its measuring runtime, and the verdict is always the runtime's.
 */
export async function attackShard(
  model: Classifier,
  attackOrName: string | Attack,
  x: Float32Array,
  y: Int32Array,
  size: number,
  options: AnyAttackOptions,
): Promise<AttackedShard> {
  const attack = typeof attackOrName === 'string' ? getAttack(attackOrName) : attackOrName;
  const judge = measuredOn(model);
  const xt = tf.tensor4d(x, [y.length, size, size, 3]);
  const yt = tf.tensor1d(y, 'int32');
  try {
    const t0 = process.hrtime.bigint();
    const r = await attack.run(attack.blackBox ? judge : model, xt, yt, options);
    const adversarial = Float32Array.from((await r.adversarial.data()) as Float32Array);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const p = await predictWithConfidence(judge, r.adversarial);
    r.adversarial.dispose();
    return { adversarial, pred: p.pred, conf: p.conf, seconds, ...(r.stages ? { stages: r.stages } : {}), ...(r.queries ? { queries: r.queries } : {}) };
  } finally {
    xt.dispose();
    yt.dispose();
  }
}

function perClass(correct: Int32Array, total: Int32Array): (number | null)[] {
  return Array.from(total, (t, c) => (t > 0 ? correct[c] / t : null));
}

/** Up to `k` items evenly spaced through `items` (candidates come in data order). */
function spread<T>(items: T[], k: number): T[] {
  if (k <= 0) return [];
  if (items.length <= k) return items;
  return Array.from({ length: k }, (_, i) => items[Math.floor((i * items.length) / k)]);
}

function normOf(norms: PerturbationNorms, norm: Norm, i: number): number {
  return norm === 'l0' ? norms.l0[i] : norm === 'l2' ? norms.l2[i] : norms.linf[i];
}

/**
 * Examples as the report writes them (8-bit PNGs): both images rounded, the adversarial one within
 * its eps, and the predictions, confidences and success re-measured on the rounded images.
 */
async function asWritten(model: Classifier, examples: AdversarialExample[], norm: Norm): Promise<AdversarialExample[]> {
  const out: AdversarialExample[] = [];
  for (const ex of examples) {
    const y = Int32Array.of(ex.label);
    const clean = await measureWritten(model, ex.clean, ex.clean, y, null);
    const adv = await measureWritten(model, ex.clean, ex.adversarial, y, null, norm === 'l0' ? undefined : { norm, eps: ex.eps });
    out.push({
      ...ex,
      clean: clean.images,
      adversarial: adv.images,
      cleanPrediction: clean.pred[0],
      cleanConfidence: clean.conf[0],
      adversarialPrediction: adv.pred[0],
      adversarialConfidence: adv.conf[0],
      success: clean.pred[0] === ex.label && adv.pred[0] !== ex.label,
    });
  }
  return out;
}

export async function evaluateRobustness(model: Classifier, set: ImageSet, opts: EvaluateOptions): Promise<RobustnessResult> {
  const attacks: Attack[] = opts.attacks.map((a) => (typeof a === 'string' ? getAttack(a) : a));
  // Only the registry's attacks can be sent to a worker thread (by name), not attacks built here
  // (a transfer attack's surrogate, say).
  const named = new Set(attacks.filter(isRegisteredAttack));
  const judge = measuredOn(model);
  if (opts.worstCase) worstCaseNorm(attacks);
  for (const e of opts.epsList) if (!Number.isFinite(e) || e < 0) throw new UserError(`eps ${e} must be a finite number ≥ 0`);
  if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new UserError(`batch size must be a positive integer, got ${opts.batchSize}`);
  if (set.size !== model.inputSize) throw new UserError(`images are ${set.size}×${set.size} but the model expects ${model.inputSize}×${model.inputSize}`);
  const n = Math.min(set.n, opts.limit ?? set.n);
  const s = set.size,
    px = s * s * 3,
    k = model.numClasses;
  const bs = opts.batchSize;
  const keep = opts.examplesPerAttack ?? 4;
  const labels = set.labels.subarray(0, n);
  const classTotal = new Int32Array(k);
  for (const y of labels) if (y >= 0 && y < k) classTotal[y]++;

  const batchTensor = (start: number, m: number) => tf.tensor4d(set.images.subarray(start * px, (start + m) * px), [m, s, s, 3]);

  // Clean pass.
  const clean: Predictions = { pred: new Int32Array(n), conf: new Float32Array(n) };
  for (let i = 0; i < n; i += bs) {
    const m = Math.min(bs, n - i);
    const x = batchTensor(i, m);
    const p = await predictWithConfidence(judge, x);
    x.dispose();
    clean.pred.set(p.pred, i);
    clean.conf.set(p.conf, i);
  }
  const cleanClassCorrect = new Int32Array(k);
  let cleanCorrect = 0;
  for (let i = 0; i < n; i++)
    if (clean.pred[i] === labels[i]) {
      cleanCorrect++;
      cleanClassCorrect[labels[i]]++;
    }

  const results: RobustnessRow[] = [];
  const examples: AdversarialExample[] = [];
  const l2EpsList = opts.l2EpsList ?? opts.epsList.map((e) => defaultL2Eps(e, s));
  for (const e of l2EpsList) if (!Number.isFinite(e) || e < 0) throw new UserError(`L2 eps ${e} must be a finite number ≥ 0`);
  const flags: CorrectFlags = new Map();
  const notes: string[] = [];
  const workers = opts.workers ?? 0;
  const replica = model instanceof OrtClassifier ? model.inner : model;
  const pool =
    workers > 0 && replica instanceof LayersClassifier && n > bs
      ? await ModelWorkers.start<AttackTask, AttackedShard>(replica, workers, {
          entry: path.join(__dirname, 'attack-worker.js'),
          withWeights: true,
          ...(model instanceof OrtClassifier ? { ortThreads: 1 } : {}),
        })
      : null;
  const own = pool && model instanceof OrtClassifier ? model.withThreads(1) : model;
  try {
    for (const attack of attacks) {
      const epsList = [...new Set(attack.norm === 'l2' ? l2EpsList : opts.epsList)];
      const exampleEps = epsList.length ? Math.max(...epsList) : 0;
      const acc = new Map<number, Acc>(
        epsList.map((e) => [
          e,
          {
            correct: 0,
            cleanCorrect: 0,
            fooled: 0,
            l0: 0,
            l2: 0,
            linf: 0,
            seconds: 0,
            attacked: 0,
            classCorrect: new Int32Array(k),
            stages: [],
            queries: 0,
            successQueries: 0,
            counted: false,
          },
        ]),
      );
      flags.set(attack.name, new Map(epsList.map((e) => [e, new Uint8Array(n)])));
      const good = new Map<number, AdversarialExample>();
      const other = new Map<number, AdversarialExample>();
      const extra = opts.attackOptions?.[attack.name] ?? {};
      for (const note of attack.notes?.(model, extra) ?? []) if (!notes.includes(note)) notes.push(`${attack.name}: ${note}`);
      type Run = { adv: Float32Array; p: Predictions; norms: PerturbationNorms; seconds: number; stages?: AttackedShard['stages']; queries?: Int32Array };
      // An attack that cannot go to the workers runs here alone, on the model's own (all-core) sessions.
      const threads = pool && named.has(attack) ? pool.size + 1 : 1;
      const here = threads > 1 ? own : model;
      // One attack run per eps, or a single run for minimal-perturbation attacks; `worker` null = here.
      const attackBatch = async (i: number, m: number, worker: number | null) => {
        const runs = new Map<number, Run>();
        let single: Run | null = null;
        const y = labels.slice(i, i + m);
        for (const eps of epsList) {
          if (eps === 0) continue;
          if (!attack.usesEps && single) continue;
          const options: AnyAttackOptions = { seed: opts.seed ?? 0, ...extra, eps, targeted: false };
          const r =
            worker === null
              ? await attackShard(here, attack, set.images.subarray(i * px, (i + m) * px), y, s, options)
              : await runInWorker(pool as AttackPool, worker, { attack: attack.name, options, x: set.images.slice(i * px, (i + m) * px), y, size: s });
          const run: Run = {
            adv: r.adversarial,
            p: { pred: r.pred, conf: r.conf },
            norms: normsFromArrays(set.images.subarray(i * px, (i + m) * px), r.adversarial, m),
            seconds: r.seconds,
            stages: r.stages,
            queries: r.queries,
          };
          if (attack.usesEps) runs.set(eps, run);
          else single = run;
        }
        return { runs, single };
      };
      const accumulate = (i: number, m: number, runs: Map<number, Run>, single: Run | null) => {
        const cleanData = set.images.subarray(i * px, (i + m) * px);
        for (const eps of epsList) {
          const a = acc.get(eps) as Acc;
          const run = eps === 0 ? null : attack.usesEps ? (runs.get(eps) ?? null) : single;
          // A minimal-perturbation run serves every eps, so each row reports that run's speed.
          if (run) {
            a.seconds += run.seconds;
            a.attacked += m;
          }
          run?.stages?.forEach((st, si) => {
            a.stages[si] ??= { attack: st.attack, fooled: 0, seconds: 0 };
            for (const f of st.fooled) a.stages[si].fooled += f;
            a.stages[si].seconds += st.seconds;
          });
          const correctAfter = flags.get(attack.name)?.get(eps) as Uint8Array;
          if (run?.queries) {
            a.counted = true;
            for (const q of run.queries) a.queries += q;
          }
          for (let j = 0; j < m; j++) {
            const gi = i + j;
            const label = labels[gi];
            // Thresholding for minimal-perturbation attacks: too large a perturbation does not count.
            const counts = run != null && (attack.usesEps || attack.norm === 'l0' || normOf(run.norms, attack.norm, j) <= eps * (1 + 1e-6));
            const pred = counts && run ? run.p.pred[j] : clean.pred[gi];
            if (pred === label) {
              a.correct++;
              a.classCorrect[label]++;
              correctAfter[gi] = 1;
            }
            if (clean.pred[gi] === label) {
              a.cleanCorrect++;
              if (pred !== label) {
                a.fooled++;
                if (run) {
                  a.l0 += run.norms.l0[j];
                  a.l2 += run.norms.l2[j];
                  a.linf += run.norms.linf[j];
                }
                if (run?.queries) a.successQueries += run.queries[j];
              }
            }
            // Example candidates: the first success (and first failure) per true class, so the
            // report shows different signs rather than the first few images of one class.
            if (eps === exampleEps && run && keep > 0) {
              const success = counts && clean.pred[gi] === label && pred !== label;
              const candidates = success ? good : other;
              if (!candidates.has(label)) {
                candidates.set(label, {
                  attack: attack.name,
                  eps,
                  index: gi,
                  label,
                  cleanPrediction: clean.pred[gi],
                  cleanConfidence: clean.conf[gi],
                  adversarialPrediction: pred,
                  adversarialConfidence: counts ? run.p.conf[j] : clean.conf[gi],
                  success,
                  size: s,
                  clean: Float32Array.from(cleanData.subarray(j * px, (j + 1) * px)),
                  adversarial: counts ? run.adv.slice(j * px, (j + 1) * px) : Float32Array.from(cleanData.subarray(j * px, (j + 1) * px)),
                });
              }
            }
          }
        }
      };
      opts.onProgress?.({ attack: attack.name, done: 0, total: n }); // the bar shows from the start
      const wallStart = performance.now();
      // Each thread takes the next batch when it is free (batches differ in cost: AutoAttack's
      // members attack only the images still robust), and results are counted in batch order.
      const starts = Array.from({ length: Math.ceil(n / bs) }, (_, b) => b * bs);
      type BatchRuns = Awaited<ReturnType<typeof attackBatch>>;
      const finished: (BatchRuns | undefined)[] = [];
      let next = 0,
        counted = 0,
        failed = false;
      const countFinished = () => {
        for (let r = finished[counted]; r && counted < starts.length; r = finished[counted]) {
          const i = starts[counted],
            m = Math.min(bs, n - i);
          accumulate(i, m, r.runs, r.single);
          finished[counted++] = undefined;
          opts.onProgress?.({ attack: attack.name, done: i + m, total: n });
        }
      };
      const lane = async (worker: number | null) => {
        while (next < starts.length && !failed) {
          const b = next++;
          try {
            finished[b] = await attackBatch(starts[b], Math.min(bs, n - starts[b]), worker);
          } catch (e) {
            failed = true;
            throw e;
          }
          countFinished();
        }
      };
      // Workers' lanes start first, so their batches run while this thread attacks its own.
      const lanes = Array.from({ length: threads - 1 }, (_, t) => lane(t));
      const settled = await Promise.allSettled([...lanes, lane(null)]);
      const failure = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failure) throw failure.reason;
      if (threads > 1) {
        // Batches ran side by side: their seconds add up to more than the wall clock. Scale each
        // row's (and member's) seconds so that the rates reported are the evaluation's own.
        const summed = [...acc.values()].reduce((t, a) => t + a.seconds, 0);
        const scale = summed > 0 ? (performance.now() - wallStart) / 1000 / summed : 1;
        for (const a of acc.values()) {
          a.seconds *= scale;
          for (const st of a.stages) st.seconds *= scale;
        }
      }
      const picked = spread([...good.values()], keep);
      examples.push(...(await asWritten(model, [...picked, ...spread([...other.values()], keep - picked.length)], attack.norm)));
      for (const eps of epsList) {
        const a = acc.get(eps) as Acc;
        results.push({
          attack: attack.name,
          title: attack.title,
          norm: attack.norm,
          eps,
          accuracy: n ? a.correct / n : NaN,
          successRate: a.cleanCorrect ? a.fooled / a.cleanCorrect : null,
          meanL0: a.fooled ? a.l0 / a.fooled : null,
          meanL2: a.fooled ? a.l2 / a.fooled : null,
          meanLinf: a.fooled ? a.linf / a.fooled : null,
          imagesPerSecond: a.attacked && a.seconds > 0 ? a.attacked / a.seconds : null,
          meanQueries: a.counted && a.fooled ? a.successQueries / a.fooled : null,
          queriesPerSecond: a.counted && a.seconds > 0 ? a.queries / a.seconds : null,
          perClassAccuracy: perClass(a.classCorrect, classTotal),
          ...(a.stages.length ? { stages: cumulativeStages(a.stages, a.cleanCorrect, n) } : {}),
          ...(attack.settings ? { settings: attack.settings({ ...extra, eps }) } : {}),
        });
      }
    }
    if (opts.worstCase) {
      const norm = attacks[0].norm;
      results.push(...worstCaseRows(attacks, [...new Set(norm === 'l2' ? l2EpsList : opts.epsList)], flags, clean.pred, labels, k));
    }
  } finally {
    await pool?.dispose();
    if (own !== model) own.dispose?.();
  }
  return {
    n,
    numClasses: k,
    clean: { accuracy: n ? cleanCorrect / n : NaN, perClassAccuracy: perClass(cleanClassCorrect, classTotal) },
    results,
    examples,
    threads: pool ? pool.size + 1 : 1,
    notes,
  };
}

/** Accuracy left after each member of a cascade: clean-correct images minus those broken so far. */
function cumulativeStages(stages: Acc['stages'], cleanCorrect: number, n: number): NonNullable<RobustnessRow['stages']> {
  let left = cleanCorrect;
  return stages.map((st) => {
    left -= st.fooled;
    return { attack: st.attack, accuracy: n ? left / n : NaN, seconds: st.seconds };
  });
}

export interface EvaluationMeta {
  model: string;
  data: string;
  split: string;
  backend: string;
}

/** The `evaluate --json` document (docs/ARCHITECTURE.md, "The command line"); example pixels are left out. */
export function robustnessToJson(result: RobustnessResult, meta: EvaluationMeta): Record<string, unknown> {
  return {
    model: meta.model,
    data: meta.data,
    split: meta.split,
    n: result.n,
    backend: meta.backend,
    clean: result.clean,
    results: result.results,
    notes: result.notes ?? [],
    examples: result.examples.map(({ clean: _c, adversarial: _a, ...rest }) => rest),
  };
}
