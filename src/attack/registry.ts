/**
 * The attacks by command-line name, and parsing/validation of the user-facing attack inputs
 * (eps values, targets), with one-line UserErrors.
 */
import { UserError } from '../data/types';
import type { Attack } from './types';
import { checkOptionNames } from './common';
import { fgsm, fgv } from './one-step';
import { bim, mifgsm, pgd, pgdL2 } from './iterative';
import { deepfool } from './deepfool';
import { jsma } from './jsma';
import { cw } from './cw';
import { lbfgs } from './lbfgs';
import { universal } from './universal';
import { fooling } from './fooling';
import { square } from './square';
import { AUTOATTACK_FAMILY } from './autoattack';

/** The attack with its run refusing option names it does not know (checkOptionNames). */
function checked(a: Attack): Attack {
  const run: Attack['run'] = (model, images, labels, options) => {
    checkOptionNames(a, options);
    return a.run(model, images, labels, options);
  };
  return Object.assign(Object.create(a) as Attack, { run });
}

export const ATTACKS: Record<string, Attack> = Object.freeze(
  Object.fromEntries(
    Object.entries({
      fgsm,
      fgv,
      bim,
      pgd,
      'pgd-l2': pgdL2,
      mifgsm,
      deepfool,
      jsma,
      cw,
      lbfgs,
      universal,
      fooling,
      square,
      ...AUTOATTACK_FAMILY,
    }).map(([k, a]) => [k, checked(a)]),
  ),
);

/** Other spellings people type. */
const ALIASES: Record<string, string> = {
  'i-fgsm': 'bim',
  ifgsm: 'bim',
  'mi-fgsm': 'mifgsm',
  'pgd-linf': 'pgd',
  pgdl2: 'pgd-l2',
  'cw-l2': 'cw',
  carlini: 'cw',
  'carlini-wagner': 'cw',
  'l-bfgs': 'lbfgs',
  szegedy: 'lbfgs',
  uap: 'universal',
  aa: 'autoattack',
  'aa-l2': 'autoattack-l2',
  apgd: 'apgd-ce',
  'apgd-l2': 'apgd-ce-l2',
};

/** True when `a` is the registry's own attack of its name (so a worker thread can look it up). */
export function isRegisteredAttack(a: Attack): boolean {
  return Object.prototype.hasOwnProperty.call(ATTACKS, a.name) && ATTACKS[a.name] === a;
}

export function attackNames(): string[] {
  return Object.keys(ATTACKS);
}

export function getAttack(name: string): Attack {
  const key = name.trim().toLowerCase();
  const a = ATTACKS[ALIASES[key] ?? key];
  if (!a) throw new UserError(`unknown attack '${name}': known attacks are ${attackNames().join(', ')}`);
  return a;
}

/** Parses 'fgsm,pgd' into attacks (validating every name before any work starts). */
export function parseAttackList(text: string): Attack[] {
  const names = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (names.length === 0) throw new UserError('no attack given');
  return names.map(getAttack);
}

/** Parses an eps such as '8/255', '0.03' or '0'; must be a finite number in [0, 1]. */
export function parseEps(text: string): number {
  const t = text.trim();
  const num = /^[+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/;
  let v = NaN;
  const parts = t.split('/');
  if (parts.length === 1 && num.test(t)) v = Number(t);
  else if (parts.length === 2 && num.test(parts[0].trim()) && num.test(parts[1].trim())) {
    const den = Number(parts[1]);
    v = den === 0 ? NaN : Number(parts[0]) / den;
  }
  if (t.startsWith('-')) throw new UserError(`eps '${text}' is negative: use a value in [0, 1] such as 8/255`);
  if (!Number.isFinite(v)) throw new UserError(`eps '${text}' is not a number: use e.g. 8/255 or 0.03`);
  if (v > 1) throw new UserError(`eps '${text}' is above 1: images are in [0, 1], use e.g. 8/255`);
  return v;
}

/** Parses '0,2/255,4/255' (duplicates removed, order kept). */
export function parseEpsList(text: string): number[] {
  const items = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.length === 0) throw new UserError('no eps given: use e.g. 0,2/255,4/255,8/255');
  const out: number[] = [];
  for (const it of items) {
    const v = parseEps(it);
    if (!out.includes(v)) out.push(v);
  }
  return out;
}

/** Checks a target class: an integer in 0..numClasses−1 and, when known, not the true class. */
export function validateTarget(target: number, numClasses: number, trueLabel?: number): number {
  if (!Number.isInteger(target) || target < 0 || target >= numClasses) {
    throw new UserError(`target class ${target} is out of range: use 0..${numClasses - 1}`);
  }
  if (trueLabel !== undefined && target === trueLabel) {
    throw new UserError(`target class ${target} is the image's true class: pick another class`);
  }
  return target;
}
