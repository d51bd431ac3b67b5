/**
 * The per-image worst case over several attacks, the way RobustBench counts: an image is robust
 * at eps only if it is classified correctly clean and after every attack in the list. The
 * attacks must share one norm (their eps values are then the same budgets).
 */
import { UserError } from '../data/types';
import type { Attack, Norm, RobustnessRow } from './types';

/** Checks an attack list for --worst-case and returns its norm. */
export function worstCaseNorm(attacks: Attack[]): Norm {
  if (attacks.length < 2) {
    const one = attacks[0]?.name ?? 'none';
    throw new UserError(
      `--worst-case needs at least two attacks (got ${one}): with one, the worst case is that attack's own accuracy` +
        (one.startsWith('autoattack') ? `; ${one} already reports the worst case of its members` : ''),
    );
  }
  const norms = [...new Set(attacks.map((a) => a.norm))];
  if (norms.length > 1) {
    const by = norms
      .map(
        (n) =>
          `${attacks
            .filter((a) => a.norm === n)
            .map((a) => a.name)
            .join(', ')} (${n})`,
      )
      .join(' vs ');
    throw new UserError(`--worst-case combines attacks with the same norm, so that eps is one budget: ${by}`);
  }
  return norms[0];
}

/** Per attack name, per eps: 1 where the image was classified correctly after that attack. */
export type CorrectFlags = Map<string, Map<number, Uint8Array>>;

/** The worst-case rows, one per eps, from the flags every attack left. */
export function worstCaseRows(
  attacks: Attack[],
  epsList: number[],
  flags: CorrectFlags,
  cleanPred: Int32Array,
  labels: Int32Array,
  numClasses: number,
): RobustnessRow[] {
  const norm = worstCaseNorm(attacks);
  const n = labels.length;
  return epsList.map((eps) => {
    let correct = 0,
      cleanCorrect = 0,
      fooled = 0;
    const classCorrect = new Int32Array(numClasses),
      classTotal = new Int32Array(numClasses);
    for (let i = 0; i < n; i++) {
      const clean = cleanPred[i] === labels[i];
      const ok = clean && attacks.every((a) => flags.get(a.name)?.get(eps)?.[i] === 1);
      classTotal[labels[i]]++;
      if (clean) cleanCorrect++;
      if (clean && !ok) fooled++;
      if (ok) {
        correct++;
        classCorrect[labels[i]]++;
      }
    }
    return {
      attack: 'worst-case',
      title: `worst case per image over ${attacks.map((a) => a.name).join(', ')}`,
      norm,
      eps,
      accuracy: n ? correct / n : NaN,
      successRate: cleanCorrect ? fooled / cleanCorrect : null,
      meanL0: null,
      meanL2: null,
      meanLinf: null,
      imagesPerSecond: null,
      meanQueries: null,
      queriesPerSecond: null,
      perClassAccuracy: Array.from(classTotal, (t, c) => (t > 0 ? classCorrect[c] / t : null)),
    };
  });
}
