/**
 * The one place that imports TensorFlow.js, so every module shares a single tfjs-core instance
 * (two copies would each keep their own backend registry and silently disagree).
 */
import * as tf from '@tensorflow/tfjs';

export { tf };
export type Tensor = tf.Tensor;
export type Tensor4D = tf.Tensor4D;
export type Tensor1D = tf.Tensor1D;
export type Tensor2D = tf.Tensor2D;
