/**
 * BIM / I-FGSM (Kurakin et al. 2017): repeated FGSM steps of size `stepSize`, clipped back into
 * the eps ball and [0, 1] after every step. No random start (that is PGD).
 */
import type { Attack } from './types';
import { iteratedLinfAttack } from './iterative';

// Madry et al.'s 2.5·eps/steps lets a step sequence reach the boundary with slack to turn.
export const bim: Attack = iteratedLinfAttack('bim', 'BIM / I-FGSM', (eps, steps) => 2.5 * eps / steps);
