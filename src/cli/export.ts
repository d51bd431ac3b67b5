/** `advsign export`: writes a model as a .tflite file (float32 or int8) and checks it. */
import * as path from 'node:path';
import { initBackend } from '../inference/backend';
import { loadLayersModel } from '../inference/model-io';
import { loadDataset } from '../data/load';
import { UserError } from '../data/types';
import type { ImageSet } from '../data/types';
import { int, jsonTarget, parseFlags, required, str, writeJsonOutput } from './args';
import { exportTflite } from '../tflite/export';
import { checkOutputs, checkWritable } from '../util/atomic-file';

export const EXPORT_HELP = `advsign export --model models/NAME --out model.tflite [options]

  --int8                     post-training int8 quantisation (per-channel conv weights,
                             int8 activations; float32 input and output; the logits layer
                             is hybrid: int8 weights, float logits)
  --full-integer             with --int8: the logits layer in int8 too (for integer-only
                             accelerators; slightly less faithful)
  --calibration <dir|synthetic>
                             images for the int8 ranges: a GTSRB folder (Train split) or
                             'synthetic' (default; use the training data for real models)
  --calibration-images N     at most N calibration images (default 1000)
  --verify N                 compare TFLite and tfjs on N images (default 256, 0 = skip)
  --json FILE|-              write the result as JSON to FILE; '-' or a bare --json: stdout only
  --backend NAME             tensorflow | wasm | cpu (for calibration and the check)

The exported model takes one 32×32 RGB image in [0, 1] (batch 1, NHWC float32) and returns
logits, like the tfjs model. Ops: MUL, ADD (the model's x·2−1), CONV_2D, MAX_POOL_2D,
RESHAPE, FULLY_CONNECTED (+ QUANTIZE/DEQUANTIZE for int8).`;

export async function exportCommand(argv: string[]): Promise<void> {
  const f = parseFlags(
    argv,
    {
      model: { type: 'string' },
      out: { type: 'string' },
      int8: { type: 'boolean' },
      calibration: { type: 'string' },
      'calibration-images': { type: 'string' },
      'full-integer': { type: 'boolean' },
      verify: { type: 'string' },
      json: { type: 'string' },
      backend: { type: 'string' },
    },
    'export',
  );
  const modelDir = required(f, 'model', 'export');
  const out = required(f, 'out', 'export');
  if (!out.endsWith('.tflite')) throw new UserError(`export: --out should name a .tflite file, got '${out}'`);
  checkWritable(out);
  checkOutputs(jsonTarget(f));
  const quantize = f.int8 ? 'int8' : 'none';
  const calSpec = str(f, 'calibration');
  if (calSpec && !f.int8) throw new UserError('export: --calibration only applies with --int8');
  if (f['full-integer'] && !f.int8) throw new UserError('export: --full-integer only applies with --int8');
  const calImages = int(f, 'calibration-images', 1000, 1);
  const verify = int(f, 'verify', 256, 0);
  await initBackend(str(f, 'backend'));
  let calibration: ImageSet | undefined;
  if (f.int8 && calSpec && calSpec !== 'synthetic') {
    // The input size comes from the model; loading it twice is cheap next to calibration.
    const m = await loadLayersModel(modelDir);
    const size = m.inputs[0].shape[1] as number;
    m.dispose();
    calibration = await loadDataset(calSpec, { split: 'train', size, limit: calImages, progress: jsonTarget(f) !== '-' });
  }
  const r = await exportTflite(modelDir, out, {
    quantize,
    calibration,
    calibrationImages: calImages,
    verifyImages: verify,
    head: f['full-integer'] ? 'int8' : undefined,
  });
  const json = jsonTarget(f);
  if (json) writeJsonOutput(json, { model: modelDir, out, ...r });
  if (json === '-') return;
  const relative = path.relative(process.cwd(), path.resolve(out));
  const rel = relative && !relative.startsWith('..') ? relative : path.resolve(out);
  console.log(
    `wrote ${rel}: ${r.bytes.toLocaleString('en-US')} bytes, ${quantize === 'int8' ? 'int8' : 'float32'}, ${r.ops.length} ops (${[...new Set(r.ops)].join(', ')})`,
  );
  if (r.calibration) {
    console.log(
      `calibrated on ${r.calibration.images} ${r.calibration.source === 'synthetic' ? 'synthetic images (pass --calibration <data dir> for a model trained on real signs)' : `images from ${calSpec}`}`,
    );
  }
  if (r.verifiedOn) {
    console.log(
      `check on ${r.verifiedOn} images: max |Δ logit| ${r.maxAbsDiff!.toExponential(2)}, top-1 agreement with tfjs ${(r.agreement! * 100).toFixed(1)}%`,
    );
  }
}
