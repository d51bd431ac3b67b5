/**
 * Typed attack options: a misspelt name is refused with the known ones instead of silently
 * falling back to its default, and stepSize has one meaning (a sign step: C&W and L-BFGS, whose
 * Adam step is learningRate, refuse it). Both checks run before the model is touched.
 */
import * as assert from 'node:assert';
import { tf } from '../src/inference/tf';
import type { Classifier } from '../src/inference/model';
import { ATTACKS, getAttack } from '../src/attack/registry';
import type { AnyAttackOptions } from '../src/attack/types';
import { UserError } from '../src/util/errors';

const noModel = {} as Classifier;

async function refusal(name: string, options: object): Promise<string> {
  const x = tf.zeros([1, 8, 8, 3]) as tf.Tensor4D;
  const y = tf.tensor1d([0], 'int32');
  try {
    await getAttack(name).run(noModel, x, y, options as AnyAttackOptions);
  } catch (e) {
    assert.ok(e instanceof UserError, `not a UserError: ${String(e)}`);
    return e.message;
  } finally {
    tf.dispose([x, y]);
  }
  throw new Error(`${name} accepted ${JSON.stringify(options)}`);
}

describe('attack options', () => {
  it('a misspelt option is refused in one line listing the known ones (its own and the common ones)', async () => {
    const msg = await refusal('cw', { confidnce: 5 });
    assert.match(msg, /^cw: unknown option 'confidnce'; known options are .*\bconfidence\b/);
    assert.match(msg, /\beps\b.*\bstepSize\b/);
    assert.ok(!msg.includes('\n'));
    assert.match(await refusal('pgd', { momentum: 0.5, eps: 0.03 }), /^pgd: unknown option 'momentum'/);
  });

  it('every registered attack refuses an unknown name', async () => {
    for (const name of Object.keys(ATTACKS)) assert.match(await refusal(name, { nope: 1 }), new RegExp(`^${name}: unknown option 'nope'`));
  });

  it('stepSize is a sign step: C&W and L-BFGS take learningRate and refuse stepSize', async () => {
    for (const name of ['cw', 'lbfgs']) assert.match(await refusal(name, { stepSize: 0.01 }), new RegExp(`^${name}: stepSize is a sign step; .*learningRate`));
  });
});
