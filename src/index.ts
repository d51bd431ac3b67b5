/**
 * advsign as a library (`require('advsign')`): load any supported model as a Classifier, attack
 * it, evaluate it, export and rebuild TFLite files. The command line (bin/advsign.js) is built on
 * the same functions.
 */
export { initBackend } from './inference/backend';
export type { BackendChoice, BackendName } from './inference/backend';
export { loadModel, describeModel } from './inference/load-model';
export type { LoadedModel, ModelDescription, ModelKind } from './inference/load-model';
export { DEFAULT_MODEL_INPUT, parseInputRange, readLabels } from './inference/model-input';
export type { InputRange, ModelInputOptions, Preprocess } from './inference/model-input';
export { LayersClassifier, measuredOn, predictClasses, predictTopK } from './inference/model';
export type { Classifier, Prediction } from './inference/model';
export { ATTACKS, attackNames, getAttack, parseEps } from './attack/registry';
export type { Attack, AttackOptions, AnyAttackOptions, AttackResult } from './attack/types';
export { makeTransferAttack, transferAttack } from './attack/transfer';
export { evaluateRobustness } from './attack/evaluate';
export type { EvaluateOptions, RobustnessResult, RobustnessRow } from './attack/evaluate';
export { loadDataset } from './data/load';
export { CLASS_NAMES } from './data/classes';
export type { ImageSet } from './data/types';
export { UserError } from './data/types';
export { exportTflite, loadTfliteModel, TfliteClassifier } from './tflite';
export { readGraph } from './tflite/graph';
export { rebuildGraph, RebuiltGraph, REBUILT_OPS } from './tflite/rebuild';
export { main } from './cli/index';
