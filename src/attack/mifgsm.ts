/**
 * MI-FGSM (Dong et al. 2018): I-FGSM whose step follows a decayed sum of L1-normalised
 * gradients; the momentum smooths the direction, which mostly helps transfer to other models.
 */
import type { Attack } from './types';
import { iteratedLinfAttack } from './iterative';

// The paper's α = eps/steps (all steps together can just reach the boundary) and μ = 1.
export const mifgsm: Attack = iteratedLinfAttack('mifgsm', 'MI-FGSM (momentum iterative FGSM)', (eps, steps) => eps / steps, 1.0);
