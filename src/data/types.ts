/**
 * Data shapes shared by readers, the renderer, training and attacks.
 * Images are float32 NHWC RGB in [0, 1] everywhere outside a model (DESIGN.md).
 */

/** A set of square RGB images stored contiguously, NHWC, values in [0, 1]. */
export interface ImageSet {
  /** n * size * size * 3 floats. */
  images: Float32Array;
  /** Class id per image, 0..42 for GTSRB. */
  labels: Int32Array;
  /** Group id per image (a GTSRB track); train/validation splits never cut a group. */
  groups: string[];
  /** Side length in pixels. */
  size: number;
  /** Number of images. */
  n: number;
}

/** How a photo becomes a model input: its sign's ROI crop (+10 % margin), or the whole image resized. */
export type Preprocess = 'crop' | 'whole';

/** Error raised for bad user input (missing folder, corrupt file…): the CLI prints its message in one line. */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}
