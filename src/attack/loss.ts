/**
 * The attack objectives (ce | margin | dlr; defined in src/inference/objective.ts, where a native
 * engine can compute them too) as the attacks use them: parsed from the command line, and their
 * input gradients, from the classifier's own fused path when it has one.
 */
import type { Tensor1D, Tensor2D, Tensor4D } from '../inference/tf';
import type { Classifier } from '../inference/model';
import { UserError } from '../data/types';
import { ATTACK_LOSSES, AttackLoss, ObjectiveGradient, logitsAndVjp, tfObjectiveGradient } from '../inference/objective';

export { ATTACK_LOSSES, objectiveCotangent, objectiveValue } from '../inference/objective';
export type { AttackLoss, ObjectiveGradient } from '../inference/objective';

export function parseAttackLoss(text: string): AttackLoss {
  const v = text.trim().toLowerCase();
  if ((ATTACK_LOSSES as readonly string[]).includes(v)) return v as AttackLoss;
  throw new UserError(`unknown loss '${text}': use one of ${ATTACK_LOSSES.join(', ')}`);
}

/**
 * Logits and the input gradient of the attack objective (adding the gradient helps the attack):
 * CE of the label untargeted, minus CE of the target targeted, or the margin / DLR. The caller
 * owns both tensors.
 */
export async function objectiveGradient(
  model: Classifier,
  x: Tensor4D,
  labels: Tensor1D,
  targets: Tensor1D | null,
  loss: AttackLoss = 'ce',
): Promise<ObjectiveGradient> {
  if (model.objectiveGradient) return model.objectiveGradient(x, labels, targets, loss);
  return tfObjectiveGradient(model, x, labels, targets, loss);
}

/** The input gradient alone, through tfjs (synchronous: for use inside a training step's tidy). */
export function ascentGradient(model: Classifier, x: Tensor4D, labels: Tensor1D, targets: Tensor1D | null, loss: AttackLoss = 'ce'): Tensor4D {
  const { grad, logits } = tfObjectiveGradient(model, x, labels, targets, loss);
  logits.dispose();
  return grad;
}

/** Like objectiveGradient, for callers that need only the gradient. */
export async function inputGradient(model: Classifier, x: Tensor4D, labels: Tensor1D, targets: Tensor1D | null, loss: AttackLoss = 'ce'): Promise<Tensor4D> {
  const { grad, logits } = await objectiveGradient(model, x, labels, targets, loss);
  logits.dispose();
  return grad;
}

/**
 * Logits and Jᵀc for a fixed cotangent c on the logits [n, k] (FAB's ∇(z_t − z_y) is c = e_t − e_y,
 * none of the named objectives): the one other gradient attacks take. A native engine's
 * vector-Jacobian product when the classifier has one (one session call), else tfjs. The caller
 * owns both tensors.
 */
export async function cotangentGradient(model: Classifier, x: Tensor4D, cotangent: Tensor2D): Promise<ObjectiveGradient> {
  if (model.vjp) return model.vjp(x, cotangent);
  return logitsAndVjp(model, x, () => cotangent.clone());
}
