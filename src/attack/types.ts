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
  /** Step size for iterative methods (defaults per attack). */
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
  /** Attack-specific extras (e.g. C&W confidence, JSMA max pixels). */
  [extra: string]: unknown;
}

/** One member of an ensemble run in cascade (AutoAttack): the images it was the first to break. */
export interface AttackStage {
  attack: string;
  fooled: Uint8Array;
  /** Time the member ran, in seconds. */
  seconds: number;
}

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
  run(model: Classifier, images: Tensor4D, labels: Tensor1D, options: AttackOptions): Promise<AttackResult>;
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
