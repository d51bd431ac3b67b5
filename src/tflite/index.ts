/** TFLite export, inference in Node and robustness of the deployed model. */
export { exportTflite, convertToTflite, compareLogits, tfjsLogits } from './export';
export type { ExportOptions, ExportResult, ConvertResult } from './export';
export { loadTfliteModel, inspectTflite, assertInputSize, tfliteRuntime, TfliteClassifier, SUPPORTED_OPS } from './runtime';
export type { LoadTfliteOptions, TfliteInfo } from './runtime';
export { tfliteRobustness } from './robustness';
export type { TfliteRobustnessOptions, TfliteRobustnessResult, TransferRow, SquareRow, TargetScore } from './robustness';
export { planFromModel, runPlan } from './plan';
export type { Plan, Step } from './plan';
export { calibrate, planToModel, planToTflite, activationQuant, quantizeWeights } from './convert';
export type { Calibration, Quantize, Int8Head } from './convert';
export { serializeModel, parseModel, hasTfliteIdentifier, opName, opCode } from './schema';
export type { ModelDesc, ParsedModel } from './schema';
