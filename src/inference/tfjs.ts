/**
 * TensorFlow.js as this project uses it: tfjs-core with its gradients and chained ops registered,
 * tfjs-layers, tfjs-converter and the plain-JS cpu backend (the last fallback). Not the
 * @tensorflow/tfjs umbrella: it also loads the WebGL backend and tfjs-data, dead weight in a Node
 * daemon. Import it through ./tf only.
 */
import * as path from 'node:path';
import * as fs from 'node:fs';
import { version_core } from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
// Types only (erased from the output): declares the chained ops (tensor.slice(...)) on Tensor.
import type {} from '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';

// tfjs-core's Node entry registers no gradients (tf.grad throws) and no chained ops; its own
// registration modules are ES modules Node cannot load, so `npm run build` bundles them into this
// CommonJS file (scripts/bundle-tfjs-gradients.js). Loaded after tfjs-core: it registers into it.
const gradients = path.join(__dirname, '..', '..', 'vendor', 'tfjs-gradients.js');
if (!fs.existsSync(gradients)) {
  throw new Error(`${gradients} is missing: run \`npm run build\` (or \`npm install\`) in ${path.resolve(__dirname, '..', '..', '..')}`);
}
require(gradients);

export * from '@tensorflow/tfjs-core';
export * from '@tensorflow/tfjs-layers';
export * from '@tensorflow/tfjs-converter';

/** The TensorFlow.js version (tfjs-core's; layers and converter are pinned to the same one). */
export const version = { tfjs: version_core };
