/** The synthetic renderer's public option and result types. */
import { SignShape } from '../classes';

export interface RenderOptions {
  /** Output side length in pixels (default 32). */
  size?: number;
  /** Seed of the scene; together with the class id it fixes the image. */
  seed: number;
  /** Random pose, lighting, blur and noise (default true). */
  augment?: boolean;
  /**
   * 'random': generated sky/foliage/building/gradient/blob background;
   * 'plain': one uniform colour (seeded when augmenting, neutral grey otherwise).
   * Default: 'random' when augmenting, else 'plain'.
   */
  background?: 'random' | 'plain';
}

export interface DatasetOptions {
  /** Images per class. */
  perClass: number;
  /** Side length in pixels (default 32). */
  size?: number;
  /** Base seed (default 1). */
  seed?: number;
  /** Class ids to render (default all 43), in this order. */
  classes?: number[];
  /** Default true; false gives canonical poses on random backgrounds. */
  augment?: boolean;
  /** Frames per group ("track"), sharing background and base pose (default 5). */
  groupSize?: number;
  /** Called after each group with the number of images rendered so far and the total. */
  onProgress?: (done: number, total: number) => void;
}

/** A sign with transparency, for stickers and compositing. */
export interface SignRGBA {
  /** size * size * 4 floats in [0, 1], straight (not premultiplied) alpha; alpha = sign mask. */
  rgba: Float32Array;
  size: number;
  classId: number;
  shape: SignShape;
}

export interface PreviewOptions {
  /** Pixel size of each rendered sign (default 64). */
  size?: number;
  /** Augmented renders instead of clean ones (default false). */
  augment?: boolean;
  seed?: number;
  /** Grid columns (default 9). */
  columns?: number;
  /** Integer nearest-neighbour upscaling of each sign (default: 2 below 48 px, else 1). */
  zoom?: number;
  /** Class ids drawn under each cell (default true). */
  labels?: boolean;
}
