/** Entry script of the training pool's worker threads (GradientPool in data-parallel.ts). */
import { serveModelWorker } from './model-worker';

serveModelWorker();
