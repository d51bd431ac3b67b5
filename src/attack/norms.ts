/**
 * Per-example size of a perturbation adv − clean.
 * L0 counts *pixels* (not channel values): a pixel counts when any of its channels changed by
 * more than 1e-6, so L0 ≤ s² and "fraction of pixels changed" is L0 / s².
 */
import type { Tensor4D } from '../inference/tf';

export interface PerturbationNorms {
  l0: Float32Array;
  l2: Float32Array;
  linf: Float32Array;
}

/** Changes at or below this are float noise, not perturbation. */
export const L0_TOLERANCE = 1e-6;

/** Norms from flat NHWC arrays of `n` images with `channels` channels (default 3). */
export function normsFromArrays(clean: Float32Array, adv: Float32Array, n: number, channels = 3): PerturbationNorms {
  if (clean.length !== adv.length || clean.length % n !== 0) throw new Error('normsFromArrays: clean and adversarial sizes differ');
  const per = clean.length / n;
  const l0 = new Float32Array(n),
    l2 = new Float32Array(n),
    linf = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let c0 = 0,
      s2 = 0,
      mx = 0;
    for (let p = i * per; p < (i + 1) * per; p += channels) {
      let changed = false;
      for (let c = 0; c < channels; c++) {
        const d = Math.abs(adv[p + c] - clean[p + c]);
        s2 += d * d;
        if (d > mx) mx = d;
        if (d > L0_TOLERANCE) changed = true;
      }
      if (changed) c0++;
    }
    l0[i] = c0;
    l2[i] = Math.sqrt(s2);
    linf[i] = mx;
  }
  return { l0, l2, linf };
}

/** Norms of adv − clean for two batches [n, s, s, c]. */
export async function perturbationNorms(clean: Tensor4D, adv: Tensor4D): Promise<PerturbationNorms> {
  const [a, b] = [(await clean.data()) as Float32Array, (await adv.data()) as Float32Array];
  return normsFromArrays(a, b, clean.shape[0], clean.shape[3]);
}
