/**
 * Why an attack that is on left the frame unchanged: the page must never show "max |δ| 0/255"
 * without a reason. Only runs on such frames (rare), so it may take one extra gradient.
 */
import { tf, Tensor4D } from '../inference/tf';
import type { Classifier } from '../inference/model';
import { AttackLoss, inputGradient } from '../attack/loss';

export interface StallInput {
  clf: Classifier;
  x: Tensor4D;
  input: Float32Array;
  label: number;
  target: number | null;
  eps: number;
  loss: AttackLoss;
}

/** The range of an image's values: a blank (flat) ROI has none to speak of. */
function valueRange(a: Float32Array): number {
  let lo = Infinity,
    hi = -Infinity;
  for (const v of a) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return hi - lo;
}

/** The reason, in one sentence for the page (and the log). */
export async function explainStall(s: StallInput): Promise<string> {
  if (!(s.eps > 0)) return 'ε is 0: the attack may not change any pixel (raise ε)';
  if (valueRange(s.input) < 2 / 255) return 'the region of interest is blank (one flat colour): no sign in view to attack — aim the ROI at a sign';
  const labels = tf.tensor1d([s.label], 'int32');
  const targets = s.target === null ? null : tf.tensor1d([s.target], 'int32');
  let grad: Float32Array;
  try {
    const g = await inputGradient(s.clf, s.x, labels, targets, s.loss);
    grad = (await g.data()) as Float32Array;
    g.dispose();
  } finally {
    tf.dispose([labels, ...(targets ? [targets] : [])]);
  }
  let nonzero = 0,
    movable = 0;
  for (let i = 0; i < grad.length; i++) {
    if (grad[i] === 0) continue;
    nonzero++;
    // A pixel at black pushed darker, or at white pushed brighter, is clipped back where it was.
    if (!((s.input[i] <= 0 && grad[i] < 0) || (s.input[i] >= 1 && grad[i] > 0))) movable++;
  }
  if (nonzero === 0) return "the model's gradient is exactly zero on this image (its output is saturated): nothing tells the attack which way to push";
  if (movable === 0) return 'every pixel the attack would push is already at black or white (all clipped)';
  return `the attack returned the clean image although ${((100 * movable) / grad.length).toFixed(0)} % of the pixels could move`;
}
