/**
 * Entry script of the evaluation pool's worker threads: the model worker of inference
 * (src/inference/model-worker.ts) plus the one task it runs here, attacking a shard.
 */
import { serveModelWorker } from '../inference/model-worker';
import { attackShard, AttackedShard, AttackTask } from './evaluate';

serveModelWorker<AttackTask, AttackedShard>(async (clf, t) => {
  const result = await attackShard(clf, t.attack, t.x, t.y, t.size, t.options);
  return { result, transfer: [result.adversarial.buffer as ArrayBuffer, result.pred.buffer as ArrayBuffer, result.conf.buffer as ArrayBuffer] };
});
