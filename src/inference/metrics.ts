/** Clean-accuracy figures: confusion matrix and per-class accuracy. */
export interface CleanMetrics {
  accuracy: number;
  /** confusion[true][predicted] counts. */
  confusion: number[][];
  /** Accuracy per true class (NaN where a class has no images). */
  perClass: { classId: number; n: number; accuracy: number }[];
}

export function cleanMetrics(pred: ArrayLike<number>, labels: ArrayLike<number>, numClasses: number): CleanMetrics {
  const confusion = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  let ok = 0;
  for (let i = 0; i < labels.length; i++) {
    confusion[labels[i]][pred[i]]++;
    if (pred[i] === labels[i]) ok++;
  }
  const perClass = confusion.map((row, c) => {
    const n = row.reduce((a, b) => a + b, 0);
    return { classId: c, n, accuracy: n ? row[c] / n : NaN };
  });
  return { accuracy: labels.length ? ok / labels.length : NaN, confusion, perClass };
}
