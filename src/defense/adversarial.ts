/**
 * Adversarial training recipes, plugged into trainClassifier as a per-batch planner (whose plan
 * every data-parallel thread applies to its own shard) or as a single-thread BatchHook:
 *   fgsm     one FGSM step from the clean image (Goodfellow et al. 2015);
 *   fgsm-rs  FGSM from a uniform random start with step 1.25·eps (Wong et al. 2020, "Fast is
 *            better than free"), plus a guard against catastrophic overfitting;
 *   pgd      k-step PGD from a random start (Madry et al. 2018), step 2.5·eps/k;
 *   trades   TRADES (Zhang et al. 2019, trades.ts): CE on the clean image plus β·KL to a k-step
 *            KL-maximising neighbour, on every image (the share `ratio` does not apply).
 * A share `ratio` of every batch is replaced by its adversarial version (the rest stays clean:
 * mixing keeps clean accuracy up), and eps ramps up linearly over the first `rampEpochs` epochs
 * (a freshly attacked model otherwise sees a loss spike that throws away what it knew).
 * Attacks are made with the model in inference mode (no dropout), as at test time.
 */
import { tf, Tensor1D, Tensor4D } from '../inference/tf';
import type { Classifier, LayersClassifier } from '../inference/model';
import type { BatchHook } from '../inference/train';
import { ADVERSARIAL_METHODS, AdversarialMethod, AdversarialPlanner, adversarialExamples, applyAdversarialPlan } from '../inference/adversarial-plan';
import { UserError } from '../data/types';
import type { AttackLoss } from '../attack/loss';

export { ADVERSARIAL_METHODS, adversarialExamples, applyAdversarialPlan } from '../inference/adversarial-plan';
export type { AdversarialMethod, AdversarialPlan, AdversarialPlanner } from '../inference/adversarial-plan';

export interface AdversarialTrainingOptions {
  method: AdversarialMethod;
  /** L∞ budget in (0, 1]. */
  eps: number;
  /** Share of each batch replaced by adversarial examples, in (0, 1] (default 0.5). */
  ratio?: number;
  /** PGD steps (default 7); TRADES's inner steps too. */
  pgdSteps?: number;
  /** TRADES's weight of the KL term (default 6). */
  tradesBeta?: number;
  /** Epochs over which eps ramps linearly from 0 (default 1; 0 = no ramp). */
  rampEpochs?: number;
  /** Batches per epoch (needed for a smooth ramp; without it the ramp goes by whole epochs). */
  stepsPerEpoch?: number;
  /** FGSM-RS step as a multiple of eps (default 1.25). */
  fgsmRsAlpha?: number;
  seed?: number;
}

export function parseAdversarialMethod(name: string): AdversarialMethod {
  const n = name.trim().toLowerCase();
  if ((ADVERSARIAL_METHODS as readonly string[]).includes(n)) return n as AdversarialMethod;
  throw new UserError(`unknown --adversarial '${name}': use one of ${ADVERSARIAL_METHODS.join(', ')}`);
}

/** A robust-training eps must lie in (0, 1]: 0 is plain training, above 1 leaves the image range. */
export function checkTrainingEps(eps: number): number {
  if (!Number.isFinite(eps) || eps <= 0 || eps > 1) {
    throw new UserError(`adversarial training eps must be in (0, 1] (e.g. 8/255), got ${eps}`);
  }
  return eps;
}

/** Refuses models whose output is softmax: gradients through saturated softmax are masked. */
export function requireLogitsModel(clf: Classifier, what: string): void {
  if ((clf as Partial<LayersClassifier>).outputsSoftmax) {
    throw new UserError(`${what} needs a model that outputs logits; this one ends in softmax (re-export it without the softmax layer)`);
  }
}

/**
 * How many images of one batch stay correctly classified under PGD (random start, step
 * 2.5·eps/steps) with every objective in `losses`: an image counts only if no run fools it (the
 * worst case per image). Synchronous, so the overfitting guard can call it inside a training step.
 */
export function pgdCorrect(
  clf: Classifier,
  x: Tensor4D,
  y: Tensor1D,
  eps: number,
  steps: number,
  seed: number,
  losses: readonly AttackLoss[] = ['ce'],
): number {
  return tf.tidy(() => {
    let ok: tf.Tensor = tf.onesLike(y).cast('bool');
    for (const loss of losses) {
      const adv = adversarialExamples(clf, x, y, 'pgd', eps, { pgdSteps: steps, seed, loss });
      ok = tf.logicalAnd(ok, tf.equal(tf.argMax(clf.logits(adv), 1), tf.cast(y, 'int32')));
    }
    return tf.sum(tf.cast(ok, 'float32')).dataSync()[0];
  });
}

/** eps at a given epoch (1-based) and step within it, ramping linearly over `rampEpochs`. */
export function rampedEps(eps: number, rampEpochs: number, epoch: number, step: number, stepsPerEpoch: number): number {
  if (rampEpochs <= 0) return eps;
  const progress = (epoch - 1 + (stepsPerEpoch > 0 ? step / stepsPerEpoch : 1)) / rampEpochs;
  return eps * Math.min(1, Math.max(0, progress));
}

export interface AdversarialHookState {
  /** eps used for the last batch. */
  lastEps: number;
  batches: number;
}

/**
 * The per-batch planner of a recipe. `guard`, when given, is consulted at every batch (it decides
 * itself when to check) and may switch the recipe to PGD-2 after repeated collapses.
 */
export function adversarialPlanner(o: AdversarialTrainingOptions, guard?: OverfitGuard): { planner: AdversarialPlanner; state: AdversarialHookState } {
  checkTrainingEps(o.eps);
  const ratio = o.ratio ?? 0.5;
  if (!(ratio > 0 && ratio <= 1)) throw new UserError(`--adv-ratio must be in (0, 1], got ${ratio}`);
  const ramp = o.rampEpochs ?? 1;
  const state: AdversarialHookState = { lastEps: 0, batches: 0 };
  let epochSeen = 0,
    stepInEpoch = 0;
  let seed = o.seed ?? 1;
  const planner: AdversarialPlanner = (clf, epoch) => {
    if (epoch !== epochSeen) {
      epochSeen = epoch;
      stepInEpoch = 0;
    }
    guard?.onBatch(clf, epoch);
    const eps = rampedEps(o.eps, ramp, epoch, stepInEpoch, o.stepsPerEpoch ?? 0);
    stepInEpoch++;
    state.batches++;
    state.lastEps = eps;
    const method = guard?.fallbackMethod ?? o.method;
    // Seeds step by 1000 so the shards of one batch (seed + shard index) never share a start.
    seed += 1000;
    return {
      method,
      eps,
      ratio: method === 'trades' ? 1 : ratio,
      pgdSteps: method === o.method ? o.pgdSteps : 2,
      fgsmRsAlpha: o.fgsmRsAlpha,
      ...(method === 'trades' ? { tradesBeta: o.tradesBeta ?? 6 } : {}),
      seed,
    };
  };
  return { planner, state };
}

/** The same recipe as a single-thread BatchHook (planner + apply on the whole batch). */
export function adversarialBatchHook(o: AdversarialTrainingOptions, guard?: OverfitGuard): { hook: BatchHook; state: AdversarialHookState } {
  const { planner, state } = adversarialPlanner(o, guard);
  const hook: BatchHook = (clf, x, y, epoch) => ({ x: applyAdversarialPlan(clf, x, y, planner(clf, epoch)), y });
  return { hook, state };
}

/** What the guard saw at one check. */
export interface GuardCheck {
  epoch: number;
  batch: number;
  pgdAccuracy: number;
  collapsed: boolean;
  restored: boolean;
}

export interface OverfitGuardOptions {
  eps: number;
  /** PGD steps for the check (default 10). */
  steps?: number;
  /** Check every this many batches as well as at each epoch start (default: only at epoch starts). */
  everyBatches?: number;
  /**
   * Collapse = PGD accuracy below `dropFactor` × the best seen so far (default 0.5), once the best
   * is above `minBest` (default 0.1; before that nothing robust exists to lose).
   */
  dropFactor?: number;
  minBest?: number;
  /** After this many collapses, switch the recipe to 2-step PGD for the rest of the run (default 2). */
  maxCollapses?: number;
  /** Replaces the PGD-accuracy measurement (tests simulate a collapse with it). */
  measure?: (clf: Classifier) => number;
  /** Called after every check (the CLI logs it). */
  onCheck?: (c: GuardCheck) => void;
}

/**
 * Catastrophic-overfitting guard for FGSM-RS (Wong et al. 2020 §5): single-step training can
 * suddenly learn a locally curved model against which FGSM is useless while PGD accuracy drops to
 * ~0 within an epoch. The guard measures PGD accuracy on a fixed held batch at each epoch start
 * (and optionally every N batches), keeps a copy of the last good weights, and puts them back when
 * PGD accuracy collapses. Repeated collapses switch the recipe to PGD-2, which does not collapse.
 */
export class OverfitGuard {
  readonly checks: GuardCheck[] = [];
  collapses = 0;
  fallbackMethod: AdversarialMethod | null = null;
  private best = 0;
  private good: tf.Tensor[] | null = null;
  private lastEpoch = 0;
  private batch = 0;
  private readonly hx: Tensor4D;
  private readonly hy: Tensor1D;

  constructor(
    private readonly model: tf.LayersModel,
    heldImages: Float32Array,
    heldLabels: Int32Array,
    size: number,
    private readonly o: OverfitGuardOptions,
  ) {
    // Kept: the guard may be built inside a training step's tidy.
    this.hx = tf.keep(tf.tensor4d(heldImages, [heldLabels.length, size, size, 3]));
    this.hy = tf.keep(tf.tensor1d(heldLabels, 'int32'));
  }

  /** PGD accuracy on the held batch (sync: the hook runs inside the training step). */
  pgdAccuracy(clf: Classifier): number {
    if (this.o.measure) return this.o.measure(clf);
    return pgdCorrect(clf, this.hx, this.hy, this.o.eps, this.o.steps ?? 10, 12345) / this.hy.shape[0];
  }

  onBatch(clf: Classifier, epoch: number): void {
    this.batch++;
    const epochStart = epoch !== this.lastEpoch;
    this.lastEpoch = epoch;
    const every = this.o.everyBatches ?? 0;
    if (epochStart || (every > 0 && this.batch % every === 0)) this.check(clf, epoch);
  }

  /** Measures, and either records the weights as good or restores the last good ones. */
  check(clf: Classifier, epoch = this.lastEpoch): GuardCheck {
    const acc = this.pgdAccuracy(clf);
    const collapsed = this.best >= (this.o.minBest ?? 0.1) && acc < (this.o.dropFactor ?? 0.5) * this.best;
    let restored = false;
    if (collapsed) {
      this.collapses++;
      if (this.good) {
        tf.tidy(() => this.model.setWeights(this.good as tf.Tensor[]));
        restored = true;
      }
      if (this.collapses >= (this.o.maxCollapses ?? 2)) this.fallbackMethod = 'pgd';
    } else {
      if (acc > this.best) this.best = acc;
      this.good?.forEach((w) => w.dispose());
      this.good = tf.tidy(() => this.model.getWeights().map((w) => tf.keep(w.clone())));
    }
    const c: GuardCheck = { epoch, batch: this.batch, pgdAccuracy: acc, collapsed, restored };
    this.checks.push(c);
    this.o.onCheck?.(c);
    return c;
  }

  get bestPgdAccuracy(): number {
    return this.best;
  }

  dispose(): void {
    this.good?.forEach((w) => w.dispose());
    this.good = null;
    this.hx.dispose();
    this.hy.dispose();
  }
}
