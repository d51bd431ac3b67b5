/** The sign palette: GTSRB-like RGB colours per SignColor. */
import { SignColor } from '../classes';

export type Rgb = [number, number, number];

const PALETTE: Record<Exclude<SignColor, 'none'>, Rgb> = {
  red: [0.78, 0.09, 0.13],
  white: [0.95, 0.95, 0.93],
  blue: [0.06, 0.3, 0.66],
  yellow: [0.98, 0.77, 0.06],
  black: [0.07, 0.07, 0.08],
  grey: [0.5, 0.5, 0.51],
};

export function css(c: Rgb): string {
  return `rgb(${Math.round(c[0] * 255)},${Math.round(c[1] * 255)},${Math.round(c[2] * 255)})`;
}

export function colorOf(c: SignColor): string {
  return c === 'none' ? 'rgba(0,0,0,0)' : css(PALETTE[c]);
}
