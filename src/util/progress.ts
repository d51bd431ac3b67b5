/**
 * A small progress bar on stderr for long work (training, reading data, attack sweeps).
 * On a non-TTY (CI logs, pipes) it prints a plain line at most every few seconds instead of
 * redrawing, so logs stay readable.
 */
export interface Progress {
  update(done: number, info?: string): void;
  done(info?: string): void;
}

export function progressBar(label: string, total: number, stream: NodeJS.WriteStream = process.stderr): Progress {
  const start = Date.now();
  const tty = Boolean(stream.isTTY);
  let lastPrint = 0;
  const quiet = process.env.ADVSIGN_QUIET === '1';
  const render = (done: number, info: string | undefined, final: boolean): void => {
    if (quiet) return;
    const now = Date.now();
    if (!final && now - lastPrint < (tty ? 100 : 5000)) return;
    lastPrint = now;
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const elapsed = (now - start) / 1000;
    const eta = frac > 0 ? (elapsed * (1 - frac)) / frac : 0;
    const width = 24;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '-');
    const text =
      `${label} [${bar}] ${done}/${total} ${(frac * 100).toFixed(0)}% ${elapsed.toFixed(0)}s` +
      (final ? '' : ` eta ${eta.toFixed(0)}s`) +
      (info ? `  ${info}` : '');
    if (tty) stream.write(`\r\x1b[K${text}${final ? '\n' : ''}`);
    else stream.write(`${text}\n`);
  };
  return {
    update: (done, info) => render(done, info, false),
    done: (info) => render(total, info, true),
  };
}
