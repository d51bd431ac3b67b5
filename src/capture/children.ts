/**
 * Child processes started by capture sources. They are killed when node exits for any reason
 * (an uncaught exception included), so no orphan ffmpeg keeps a camera busy.
 */
import type { ChildProcess } from 'node:child_process';

const children = new Set<ChildProcess>();
let hooked = false;

export function trackChild(child: ChildProcess): void {
  children.add(child);
  if (!hooked) {
    hooked = true;
    process.once('exit', () => {
      for (const c of children) {
        try {
          c.kill('SIGKILL');
        } catch {
          /* already gone */
        }
      }
    });
  }
}

export function untrackChild(child: ChildProcess): void {
  children.delete(child);
}

export function liveChildren(): number {
  return children.size;
}
