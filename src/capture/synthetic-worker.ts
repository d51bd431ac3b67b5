/**
 * Renders the synthetic scene in a worker thread, so on a multi-core board the live loop's
 * thread spends its time on the model, not on drawing the scene. The parent asks for a frame
 * at a scene time; the worker answers with the pixels (transferred, not copied) and the class.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { SyntheticScene, SyntheticOptions } from './synthetic';

export interface RenderRequest {
  seconds: number;
}

export interface RenderReply {
  rgb: Uint8Array;
  classId: number;
}

const scene = new SyntheticScene(workerData as SyntheticOptions);
parentPort?.on('message', (m: RenderRequest) => {
  const { rgb, pose } = scene.render(m.seconds);
  // A large Buffer owns its ArrayBuffer (it is not from the small-buffer pool): transfer it.
  const own = rgb.byteOffset === 0 && rgb.buffer.byteLength === rgb.length ? rgb : Buffer.from(rgb);
  const reply: RenderReply = { rgb: own, classId: pose.classId };
  parentPort!.postMessage(reply, [own.buffer as ArrayBuffer]);
});
