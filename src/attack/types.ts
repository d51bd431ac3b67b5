/**
 * The common attack interface (docs/ARCHITECTURE.md, "Attacks"): one object per method, one call over a batch.
 * Images are float32 NHWC in [0, 1]; attacks work on logits and never leave [0, 1] nor exceed
 * their stated norm bound.
 */
import type { Tensor4D, Tensor1D } from '../inference/tf';
import type { Classifier } from '../inference/model';
import type { AttackLoss } from './loss';

export type Norm = 'linf' | 'l2' | 'l0';

export interface AttackOptions {
  /** Perturbation budget in the attack's norm (for L∞: per-pixel, e.g. 8/255). */
  eps?: number;
  /** Aim for `target` (or per-image `targets`) instead of any wrong class. */
  targeted?: boolean;
  target?: number;
  targets?: Int32Array;
  /** Iterations for iterative methods. */
  steps?: number;
  /**
   * The signed step of the sign-gradient methods (BIM, PGD, MI-FGSM, universal, fooling; per
   * attack defaults); the L2 step's length for pgd-l2. Adam-based attacks (C&W, L-BFGS) take
   * `learningRate` instead and refuse this.
   */
  stepSize?: number;
  /** Random start / restarts for PGD-like methods. */
  randomStart?: boolean;
  restarts?: number;
  seed?: number;
  /** The objective gradient attacks climb (see loss.ts); only attacks with `takesLoss`. Default 'ce'. */
  loss?: AttackLoss;
  /**
   * The result is to be written as an 8-bit image: the minimal-perturbation attacks (DeepFool,
   * C&W, L-BFGS, JSMA) then judge success on, and return, their image rounded to the 1/255 grid
   * (written.ts), searching on until the rounded image fools the model or their budget runs out.
   */
  eightBit?: boolean;
  /** Square's query budget per image (AutoAttack and its members: proposals, default 5000). */
  maxQueries?: number;
  /** Square: false runs the window schedule unscaled, as AutoAttack does (default true). */
  rescaleSchedule?: boolean;
  /** APGD-T and FAB-T: how many of the classes ranked next after the label to target (default 9). */
  targetClasses?: number;
  // No index signature: an attack's own options are in its interface (CwAttackOptions…), and
  // names neither lists are refused at run time with the known ones (checkOptionNames).
}

/** One member of an ensemble run in cascade (AutoAttack): the images it was the first to break. */
export interface AttackStage {
  attack: string;
  fooled: Uint8Array;
  /** Time the member ran, in seconds. */
  seconds: number;
}

// Each attack's own options (those beyond AttackOptions), listed in its `extraOptions`.

/** C&W's own options. */
export interface CwAttackOptions extends AttackOptions {
  /** Adam's learning rate in tanh space (default 0.01). */
  learningRate?: number;
  /** κ: how far past the decision boundary the margin must go (default 0). */
  confidence?: number;
  /** The first trade-off constant c of the binary search (default 1). */
  initialConst?: number;
  /** Binary-search steps over c (default 5). */
  binarySteps?: number;
}

/** L-BFGS's own options. */
export interface LbfgsAttackOptions extends AttackOptions {
  /** Adam's learning rate (default 0.01). */
  learningRate?: number;
  /** The first trade-off constant c of the search (default 1). */
  initialConst?: number;
  /** Line-search steps over c (default 4). */
  searchSteps?: number;
  /** Untargeted runs aim at the second-ranked or a random class (default 'second'). */
  targetMode?: 'second' | 'random';
}

/** JSMA's own options. */
export interface JsmaAttackOptions extends AttackOptions {
  /** Share of the pixels it may change (default 0.1). */
  maxFraction?: number;
  /** Features considered for each pair (default 48). */
  pairCandidates?: number;
  saliency?: 'probs' | 'logits';
  direction?: 'increase' | 'both';
  /** Untargeted runs aim at the second-ranked or a random class (default 'second'). */
  targetMode?: 'second' | 'random';
}

/** DeepFool's own options. */
export interface DeepFoolAttackOptions extends AttackOptions {
  /** Overshoot past the linearised boundary (default 0.02). */
  overshoot?: number;
  /** Classes considered per step (default 10). */
  candidates?: number;
}

/** Square's own options. */
export interface SquareAttackOptions extends AttackOptions {
  /** Share of the image the first squares cover (default 0.1; AutoAttack 0.8). */
  pInit?: number;
}

/** The fooling attack's own options. */
export interface FoolingAttackOptions extends AttackOptions {
  /** Stop when the target's softmax reaches this (default 0.99). */
  threshold?: number;
}

/** The universal attack's own options. */
export interface UniversalAttackOptions extends AttackOptions {
  /** A perturbation computed beforehand (computeUniversal); without it one is fitted on the batch. */
  perturbation?: Float32Array;
  epochs?: number;
  method?: 'fgsm' | 'deepfool';
  batchSize?: number;
}

/** MI-FGSM's own option. */
export interface MomentumAttackOptions extends AttackOptions {
  /** Decay of the accumulated gradient (default 1). */
  momentum?: number;
}

/** Every option some attack takes: what a caller holding any Attack may pass (each attack refuses the others' at run time). */
export type AnyAttackOptions = CwAttackOptions &
  LbfgsAttackOptions &
  JsmaAttackOptions &
  DeepFoolAttackOptions &
  SquareAttackOptions &
  FoolingAttackOptions &
  UniversalAttackOptions &
  MomentumAttackOptions;

export interface AttackResult {
  /** Adversarial images, same shape as the input, in [0, 1]. Caller disposes. */
  adversarial: Tensor4D;
  /** Per image: 1 when the attack succeeded (misclassified, or hit the target when targeted). */
  success: Uint8Array;
  /**
   * Logits of `adversarial`, row-major [n, classes], when the attack computed them for its success
   * check (callers that need predictions can skip another forward pass).
   */
  logits?: Float32Array;
  /** Model queries used (black-box attacks), per image when meaningful. */
  queries?: Int32Array;
  /** Ensembles: which member broke which image, in the order they ran. */
  stages?: AttackStage[];
}

export interface Attack {
  /** Short name used on the command line, e.g. 'fgsm', 'pgd'. */
  readonly name: string;
  /** Human-readable title. */
  readonly title: string;
  /** The norm its budget is measured in ('l0' for JSMA, 'l2' for C&W/DeepFool…). */
  readonly norm: Norm;
  /** Whether `eps` bounds the perturbation (minimal-perturbation attacks ignore it). */
  readonly usesEps: boolean;
  /** Whether it supports targeted mode. */
  readonly supportsTargeted: boolean;
  /**
   * It only reads the model's outputs (no gradients): it runs on the model's measuring runtime
   * (a .tflite file's interpreter) rather than on the differentiable copy.
   */
  readonly blackBox?: boolean;
  /** Whether it climbs a choosable objective (`loss`); the others have their own (DeepFool, C&W…). */
  readonly takesLoss: boolean;
  /** The options it takes beyond AttackOptions (its own interface's names), e.g. C&W's 'confidence'. */
  readonly extraOptions?: readonly string[];
  run(model: Classifier, images: Tensor4D, labels: Tensor1D, options: AnyAttackOptions): Promise<AttackResult>;
  /** What a user should know before trusting a run on this model (fewer targets than asked…). */
  notes?(model: Classifier, options: AttackOptions): string[];
  /** The parameters a run with `options` uses, defaults filled in: what a figure is labelled with. */
  settings?(options: AttackOptions): AttackSettings;
}

/** An attack run's effective parameters (those that apply to it). */
export interface AttackSettings {
  steps?: number;
  restarts?: number;
  stepSize?: number;
  randomStart?: boolean;
  momentum?: number;
  loss?: AttackLoss;
  queries?: number;
  targetClasses?: number;
  norm?: Norm;
  /** An ensemble's members, in order. */
  members?: string;
}

/** One attack at one eps in an evaluation (evaluate.ts; worst-case.ts builds them too). */
export interface RobustnessRow {
  attack: string;
  title: string;
  norm: Norm;
  eps: number;
  accuracy: number;
  successRate: number | null;
  meanL0: number | null;
  meanL2: number | null;
  meanLinf: number | null;
  imagesPerSecond: number | null;
  /** Black-box attacks: mean model queries of the successful images, and queries per second of attack time. */
  meanQueries: number | null;
  queriesPerSecond: number | null;
  /** Per class id: accuracy under this attack, null for classes absent from the data. */
  perClassAccuracy: (number | null)[];
  /** Ensembles run in cascade (AutoAttack): the accuracy left after each member, in order. */
  stages?: { attack: string; accuracy: number; seconds: number }[];
  /** The run's settings when the attack states them (steps, restarts, step size, queries…). */
  settings?: AttackSettings;
}
