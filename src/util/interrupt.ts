/**
 * Cooperative interruption of long evaluation loops (validation during training). tfjs's data()
 * resolves as a microtask on wasm/cpu, so a loop of awaits never reaches the event loop by itself:
 * signal handlers would not run until it ends.
 */

/** Polled between batches: true means the user asked to stop (Ctrl-C / SIGTERM). */
export type StopCheck = () => boolean;

/** Thrown out of an evaluation loop whose StopCheck turned true; the caller discards the pass. */
export class EvaluationInterrupted extends Error {
  constructor() {
    super('evaluation interrupted');
    this.name = 'EvaluationInterrupted';
  }
}

/** Lets the event loop run (signal handlers, timers), then throws EvaluationInterrupted if asked to stop. */
export async function yieldUnlessStopped(shouldStop?: StopCheck): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
  if (shouldStop?.()) throw new EvaluationInterrupted();
}
