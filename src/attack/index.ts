/** The attack module's public surface (docs/ARCHITECTURE.md, "Attacks"). */
export type {
  Attack,
  AttackOptions,
  AnyAttackOptions,
  AttackResult,
  Norm,
  CwAttackOptions,
  LbfgsAttackOptions,
  JsmaAttackOptions,
  DeepFoolAttackOptions,
  SquareAttackOptions,
  FoolingAttackOptions,
  UniversalAttackOptions,
  MomentumAttackOptions,
} from './types';
export { ATTACKS, attackNames, getAttack, parseAttackList, parseEps, parseEpsList, validateTarget } from './registry';
export { fgsm, fgv } from './one-step';
export { bim, mifgsm, pgd, pgdL2 } from './iterative';
export { deepfool, deepfoolBatch } from './deepfool';
export { jsma } from './jsma';
export { cw } from './cw';
export { lbfgs } from './lbfgs';
export { universal, computeUniversal, applyPerturbation, universalAttackWith } from './universal';
export type { UniversalOptions, UniversalResult } from './universal';
export { fooling, makeFoolingImages } from './fooling';
export type { FoolingOptions, FoolingResult } from './fooling';
export { square } from './square';
export { transferAttack, makeTransferAttack } from './transfer';
export type { TransferResult } from './transfer';
export { perturbationNorms, normsFromArrays } from './norms';
export type { PerturbationNorms } from './norms';
export { evaluateRobustness, robustnessToJson } from './evaluate';
export type { EvaluateOptions, EvaluateProgress, RobustnessResult, RobustnessRow, AdversarialExample, EvaluationMeta } from './evaluate';
export { renderReportHtml, accuracyPlotSvg, formatEps } from './report';
export type { ReportMeta } from './report';
