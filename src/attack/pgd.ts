/**
 * PGD, L∞ (Madry et al. 2018): BIM from a uniformly random start inside the eps ball, with
 * optional restarts; per image the best (lowest-margin) restart is returned.
 */
import type { Attack } from './types';
import { pgdAttack } from './iterative';

export const pgd: Attack = pgdAttack('pgd', 'PGD (L∞, random start, restarts)', 'linf');
