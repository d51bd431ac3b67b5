/**
 * PGD, L2: steps along the L2-normalised gradient, projection onto the L2 ball of radius eps
 * (then [0, 1], which can only shrink the norm). eps is an L2 radius over all 3·s² values,
 * so useful values are much larger than L∞ ones (e.g. 0.5 rather than 8/255).
 */
import type { Attack } from './types';
import { pgdAttack } from './iterative';

export const pgdL2: Attack = pgdAttack('pgd-l2', 'PGD (L2, random start, restarts)', 'l2');
