/**
 * The one place the rest of the code imports TensorFlow.js from (./tfjs assembles it), so every
 * module shares a single tfjs-core instance (two copies would each keep their own backend
 * registry and silently disagree).
 */
import * as tf from './tfjs';

export { tf };
export type Tensor = tf.Tensor;
export type Tensor4D = tf.Tensor4D;
export type Tensor1D = tf.Tensor1D;
export type Tensor2D = tf.Tensor2D;

/**
 * Exact sign on every backend: 1 for x > 0, −1 for x < 0, 0 only for x = 0. tfjs-wasm's Sign
 * returns 0 for |x| < FLT_EPSILON (≈ 1.2e-7), and the input gradients of confidently classified
 * images are that small, so tf.sign on a gradient silently drops pixels. Use this instead.
 */
export function signExact<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.sub(tf.cast(tf.greater(x, 0), 'float32'), tf.cast(tf.less(x, 0), 'float32')) as T);
}

/** x projected into the L∞ ball of radius eps around `clean`, then into the image range [0, 1]. */
export function projectLinf(adv: Tensor4D, clean: Tensor4D, eps: number): Tensor4D {
  return tf.tidy(() => {
    const d = tf.clipByValue(tf.sub(adv, clean), -eps, eps);
    return tf.clipByValue(tf.add(clean, d), 0, 1) as Tensor4D;
  });
}
