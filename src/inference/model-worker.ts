/**
 * Worker-thread side of the data-parallel pools (data-parallel.ts). The wasm backend runs on one
 * core, so extra threads, each with its own backend and a replica of the model, take a share of
 * the work: the gradient of part of a training batch ('grad'), or attacking part of an
 * evaluation set ('attack').
 */
import { parentPort } from 'node:worker_threads';
import { tf } from './tf';
import { initBackend } from './backend';
import { LayersClassifier, setDropoutSeeds, unseedDropout } from './model';
import { shardGradients, unflatten, flattenTensors } from './data-parallel';
import type { WorkerReply, WorkerRequest } from './data-parallel';

let clf: LayersClassifier | null = null;

async function handle(msg: WorkerRequest): Promise<WorkerReply> {
  if (msg.type === 'init') {
    await initBackend(msg.backend);
    const model = await tf.models.modelFromJSON(msg.topology as tf.io.ModelJSON);
    unseedDropout(model);
    if (msg.weights) {
      const w = msg.weights;
      tf.tidy(() => model.setWeights(unflatten(w, model.weights.map((v) => v.shape as number[]))));
    }
    clf = new LayersClassifier(model, msg.outputsSoftmax);
    return { type: 'ready', backend: tf.getBackend() };
  }
  if (!clf) throw new Error('model worker used before init');
  const c = clf;
  const s = msg.size;
  if (msg.type === 'attack') {
    // Loaded on first use: training workers never need the attack library.
    const { attackShard } = await import('../attack/evaluate');
    const r = await attackShard(c, msg.attack, msg.x, msg.y, s, msg.options);
    return { type: 'attacked', ...r };
  }
  const m = c.model;
  tf.tidy(() => m.setWeights(unflatten(msg.weights, m.weights.map((w) => w.shape as number[]))));
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
  return { type: 'grads', grads, loss, correct };
}

function transferables(r: WorkerReply): ArrayBuffer[] {
  if (r.type === 'grads') return [r.grads.buffer as ArrayBuffer];
  if (r.type === 'attacked') return [r.adversarial.buffer as ArrayBuffer, r.pred.buffer as ArrayBuffer, r.conf.buffer as ArrayBuffer];
  return [];
}

parentPort?.on('message', (msg: WorkerRequest) => {
  handle(msg).then(
    (reply) => parentPort?.postMessage(reply, transferables(reply)),
    (e: unknown) => parentPort?.postMessage({ type: 'error', message: e instanceof Error ? e.message : String(e) } satisfies WorkerReply),
  );
});
