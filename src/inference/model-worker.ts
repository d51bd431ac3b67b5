/**
 * Worker-thread side of the data-parallel pools (data-parallel.ts). The wasm backend runs on one
 * core, so extra threads, each with its own backend and a replica of the model, take a share of
 * the work: the gradient of part of a training batch ('grad'), or a task of the pool's own kind
 * ('task': attacking part of an evaluation set, given by src/attack/attack-worker.ts). Tasks run
 * on onnxruntime when the pool asks for it (one session thread per worker, so the JavaScript of
 * one worker's attack overlaps the engine calls of another's). No side effects on import: an
 * entry script (grad-worker.ts, attack-worker.ts) calls serveModelWorker.
 */
import { parentPort } from 'node:worker_threads';
import { tf } from './tf';
import { initBackend } from './backend';
import { Classifier, LayersClassifier, setDropoutSeeds, unseedDropout } from './model';
import { useEngine } from './engine';
import { shardGradients, unflatten, flattenTensors } from './data-parallel';
import type { WorkerReply, WorkerRequest } from './data-parallel';

/** Runs one task on this worker's replica; `transfer` lists the result's buffers to move, not copy. */
export type TaskRunner<T, R> = (clf: Classifier, task: T) => Promise<{ result: R; transfer: ArrayBuffer[] }>;

let clf: LayersClassifier | null = null;
/** What tasks run on: the replica itself, or its onnxruntime export. */
let taskClassifier: Classifier | null = null;

async function handle<T, R>(msg: WorkerRequest<T>, runTask?: TaskRunner<T, R>): Promise<{ reply: WorkerReply<R>; transfer: ArrayBuffer[] }> {
  if (msg.type === 'init') {
    await initBackend(msg.backend);
    const model = await tf.models.modelFromJSON(msg.topology as tf.io.ModelJSON);
    unseedDropout(model);
    if (msg.weights) {
      const w = msg.weights;
      tf.tidy(() =>
        model.setWeights(
          unflatten(
            w,
            model.weights.map((v) => v.shape as number[]),
          ),
        ),
      );
    }
    clf = new LayersClassifier(model, msg.outputsSoftmax);
    taskClassifier = msg.ortThreads ? useEngine(clf, 'ort', msg.ortThreads).classifier : clf;
    return { reply: { type: 'ready', backend: tf.getBackend() }, transfer: [] };
  }
  if (!clf) throw new Error('model worker used before init');
  const c = clf;
  if (msg.type === 'task') {
    if (!runTask) throw new Error('this model worker runs no tasks (start it from an entry that gives serveModelWorker a runner)');
    const { result, transfer } = await runTask(taskClassifier ?? c, msg.task);
    return { reply: { type: 'done', result }, transfer };
  }
  const s = msg.size;
  const m = c.model;
  tf.tidy(() =>
    m.setWeights(
      unflatten(
        msg.weights,
        m.weights.map((w) => w.shape as number[]),
      ),
    ),
  );
  if (msg.dropoutSeed !== undefined) setDropoutSeeds(m, msg.dropoutSeed);
  const r = tf.tidy(() => {
    const x = tf.tensor4d(msg.x, [msg.n, s, s, 3]);
    const y = tf.tensor1d(msg.y, 'int32');
    return shardGradients(c, x, y, msg.numClasses, msg.training, msg.plan, msg.loss);
  });
  const grads = await flattenTensors(r.grads);
  const loss = (await r.loss.data())[0];
  const correct = (await r.correct.data())[0];
  tf.dispose([r.loss, r.correct, ...r.grads]);
  return { reply: { type: 'grads', grads, loss, correct }, transfer: [grads.buffer as ArrayBuffer] };
}

/** Answers the pool's messages on this worker thread (a no-op on the main thread). */
export function serveModelWorker<T = never, R = never>(runTask?: TaskRunner<T, R>): void {
  parentPort?.on('message', (msg: WorkerRequest<T>) => {
    handle(msg, runTask).then(
      ({ reply, transfer }) => parentPort?.postMessage(reply, transfer),
      (e: unknown) => parentPort?.postMessage({ type: 'error', message: e instanceof Error ? e.message : String(e) } satisfies WorkerReply<R>),
    );
  });
}
