/** Attack registry, user-input parsing and the norm helpers: no model needed. */
import * as assert from 'node:assert/strict';
import { UserError } from '../src/data/types';
import { ATTACKS, attackNames, getAttack, parseAttackList, parseEps, parseEpsList, validateTarget } from '../src/attack/registry';
import { normsFromArrays } from '../src/attack/norms';
import { marginsFromLogits, resolveTargets } from '../src/attack/common';
import { formatEps, accuracyPlotSvg } from '../src/attack/report';
import { squareFraction } from '../src/attack/square';

function throwsUser(f: () => unknown, re: RegExp): void {
  assert.throws(f, (e: unknown) => e instanceof UserError && re.test(e.message));
}

describe('attack registry and inputs', () => {
  it('registers every method under its own name with a consistent shape', () => {
    for (const [key, a] of Object.entries(ATTACKS)) {
      assert.equal(a.name, key);
      assert.ok(a.title.length > 0);
      assert.ok(['linf', 'l2', 'l0'].includes(a.norm));
      assert.equal(typeof a.run, 'function');
    }
    for (const n of ['fgsm', 'fgv', 'bim', 'pgd', 'pgd-l2', 'mifgsm', 'deepfool', 'jsma', 'cw', 'lbfgs', 'universal', 'fooling', 'square']) {
      assert.ok(attackNames().includes(n), n);
    }
  });

  it('resolves names case-insensitively and through aliases', () => {
    assert.equal(getAttack('FGSM').name, 'fgsm');
    assert.equal(getAttack(' i-fgsm ').name, 'bim');
    assert.equal(getAttack('carlini').name, 'cw');
    assert.deepEqual(
      parseAttackList('fgsm, pgd,deepfool').map((a) => a.name),
      ['fgsm', 'pgd', 'deepfool'],
    );
  });

  it('an unknown attack is a UserError listing the known ones', () => {
    throwsUser(() => getAttack('nope'), /unknown attack 'nope'.*fgsm.*pgd.*square/);
    throwsUser(() => parseAttackList('fgsm,nope'), /nope/);
    throwsUser(() => parseAttackList(' , '), /no attack/);
  });

  it('parses eps as fractions or decimals', () => {
    assert.equal(parseEps('8/255'), 8 / 255);
    assert.equal(parseEps(' 0.03 '), 0.03);
    assert.equal(parseEps('0'), 0);
    assert.equal(parseEps('1'), 1);
    assert.equal(parseEps('1e-2'), 0.01);
    assert.deepEqual(parseEpsList('0,2/255,4/255,2/255'), [0, 2 / 255, 4 / 255]);
  });

  it('rejects bad eps values with a UserError', () => {
    throwsUser(() => parseEps('abc'), /not a number/);
    throwsUser(() => parseEps('-1'), /negative/);
    throwsUser(() => parseEps('-1/255'), /negative/);
    throwsUser(() => parseEps('2'), /above 1/);
    throwsUser(() => parseEps('300/255'), /above 1/);
    throwsUser(() => parseEps('NaN'), /not a number/);
    throwsUser(() => parseEps('Infinity'), /not a number/);
    throwsUser(() => parseEps('8/0'), /not a number/);
    throwsUser(() => parseEps(''), /not a number/);
    throwsUser(() => parseEpsList('0,abc'), /abc/);
    throwsUser(() => parseEpsList(''), /no eps/);
  });

  it('validates targets: range and not the true class', () => {
    assert.equal(validateTarget(5, 43), 5);
    assert.equal(validateTarget(5, 43, 4), 5);
    throwsUser(() => validateTarget(43, 43), /out of range/);
    throwsUser(() => validateTarget(-1, 43), /out of range/);
    throwsUser(() => validateTarget(2.5, 43), /out of range/);
    throwsUser(() => validateTarget(7, 43, 7), /true class/);
  });

  it('attack options: targeted needs a target, targets must be in range and one per image', () => {
    assert.equal(resolveTargets({}, 2, 43, 'x'), null);
    assert.deepEqual(Array.from(resolveTargets({ targeted: true, target: 3 }, 2, 43, 'x') as Int32Array), [3, 3]);
    throwsUser(() => resolveTargets({ targeted: true }, 2, 43, 'x'), /needs target/);
    throwsUser(() => resolveTargets({ targeted: true, target: 50 }, 2, 43, 'x'), /outside/);
    throwsUser(() => resolveTargets({ targeted: true, targets: new Int32Array([1]) }, 2, 43, 'x'), /1 entries for 2/);
  });
});

describe('perturbation norms', () => {
  it('counts L0 in pixels and computes L2 and L∞ per example', () => {
    // Two 2×2 RGB images.
    const clean = new Float32Array(24).fill(0.5);
    const adv = Float32Array.from(clean);
    adv[0] = 0.6;
    adv[1] = 0.4; // image 0, pixel 0: two channels change → one pixel
    adv[11] = 0.5 + 1e-7; // below the tolerance: not a change
    adv[12 + 9] = 0.8; // image 1, pixel 3
    const n = normsFromArrays(clean, adv, 2);
    assert.deepEqual(Array.from(n.l0), [1, 1]);
    assert.ok(Math.abs(n.l2[0] - Math.sqrt(0.02)) < 1e-6);
    assert.ok(Math.abs(n.linf[0] - 0.1) < 1e-6);
    assert.ok(Math.abs(n.l2[1] - 0.3) < 1e-6 && Math.abs(n.linf[1] - 0.3) < 1e-6);
  });

  it('margins are negative exactly when the attack has succeeded', () => {
    const z = new Float32Array([3, 1, 0, /**/ 0, 2, 1]);
    const y = new Int32Array([0, 0]);
    const m = marginsFromLogits(z, 2, 3, y, false);
    assert.deepEqual(Array.from(m), [2, -2]);
    const t = marginsFromLogits(z, 2, 3, new Int32Array([2, 1]), true);
    assert.deepEqual(Array.from(t), [3, -1]);
  });
});

describe('report pieces', () => {
  it('formats eps and draws an SVG plot', () => {
    assert.equal(formatEps(8 / 255), '8/255');
    assert.equal(formatEps(0), '0');
    assert.equal(formatEps(0.5, 'l2'), '0.5');
    assert.equal(formatEps(0.0123), '0.0123');
    const row = {
      attack: 'fgsm',
      title: 'FGSM',
      norm: 'linf' as const,
      successRate: 0,
      meanL0: null,
      meanL2: null,
      meanLinf: null,
      imagesPerSecond: null,
      meanQueries: null,
      queriesPerSecond: null,
      perClassAccuracy: [],
    };
    const svg = accuracyPlotSvg(
      [
        { ...row, eps: 0, accuracy: 0.9 },
        { ...row, eps: 8 / 255, accuracy: 0.2 },
      ],
      0.9,
      'L∞ <attacks>',
    );
    assert.match(svg, /^<svg/);
    assert.match(svg, /<polyline[^>]*points="[\d., ]+"/);
    assert.match(svg, /L∞ &lt;attacks&gt;/);
  });

  it('square window fraction follows the halving schedule', () => {
    assert.equal(squareFraction(0.1, 0, 10000), 0.1);
    assert.equal(squareFraction(0.1, 11, 10000), 0.05);
    assert.equal(squareFraction(0.1, 9000, 10000), 0.1 / 512);
    assert.equal(squareFraction(0.1, 2, 1000), 0.1 / 2); // rescaled to the budget
  });
});
