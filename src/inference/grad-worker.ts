/**
 * Worker-thread side of data-parallel training (see data-parallel.ts). The wasm backend runs on
 * one core, so a second thread with its own backend and model replica computes the gradient of
 * part of each batch. Per step it gets the current weights and its shard, and sends back the
 * gradient of the shard's mean loss, the loss and the number of correct predictions.
 */
import { parentPort } from 'node:worker_threads';
import { tf } from './tf';
import { initBackend } from './backend';
import { LayersClassifier, unseedDropout } from './model';
import { shardGradients, unflatten, flattenTensors } from './data-parallel';
import type { WorkerReply, WorkerRequest } from './data-parallel';

let clf: LayersClassifier | null = null;

async function handle(msg: WorkerRequest): Promise<WorkerReply> {
  if (msg.type === 'init') {
    await initBackend(msg.backend);
    const model = await tf.models.modelFromJSON(msg.topology as tf.io.ModelJSON);
    unseedDropout(model);
    clf = new LayersClassifier(model, msg.outputsSoftmax);
    return { type: 'ready', backend: tf.getBackend() };
  }
  if (!clf) throw new Error('gradient worker used before init');
  const c = clf;
  const m = c.model;
  tf.tidy(() => m.setWeights(unflatten(msg.weights, m.weights.map((w) => w.shape as number[]))));
  const s = msg.size;
  const r = tf.tidy(() => {
    const x = tf.tensor4d(msg.x, [msg.n, s, s, 3]);
    const y = tf.tensor1d(msg.y, 'int32');
    return shardGradients(c, x, y, msg.numClasses, msg.training, msg.plan);
  });
  const grads = await flattenTensors(r.grads);
  const loss = (await r.loss.data())[0];
  const correct = (await r.correct.data())[0];
  tf.dispose([r.loss, r.correct, ...r.grads]);
  return { type: 'grads', grads, loss, correct };
}

parentPort?.on('message', (msg: WorkerRequest) => {
  handle(msg).then(
    (reply) => parentPort?.postMessage(reply, reply.type === 'grads' ? [reply.grads.buffer as ArrayBuffer] : []),
    (e: unknown) => parentPort?.postMessage({ type: 'error', message: e instanceof Error ? e.message : String(e) } satisfies WorkerReply),
  );
});
