/** `advsign train`: trains the CNN on GTSRB or synthetic signs and writes models/NAME with its card. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend } from '../inference/backend';
import { ARCHITECTURES, Architecture } from '../inference/model';
import { trainClassifier, accuracy, DEFAULT_TRAIN } from '../inference/train';
import { defaultWorkerCount } from '../inference/data-parallel';
import { saveModel, ModelCard, readCard, lineageOf } from '../inference/model-io';
import { loadDataset, isSynthetic } from '../data/load';
import { splitByGroup } from '../data/gtsrb';
import { CLASS_NAMES } from '../data/classes';
import { UserError } from '../data/types';
import { int, num, parseFlags, required, str } from './args';
import { version } from './paths';
import { addAdversarialTraining, ADVERSARIAL_HELP, ADVERSARIAL_FLAGS } from './train-defense';
import { ibpTrainingRun } from '../defense/ibp-train';
import { IBP_TRAINING_FLAGS, IBP_TRAINING_HELP, parseIbpTraining } from './train-ibp';
import { checkWritable } from '../util/atomic-file';
import { parseEngineName } from '../inference/engine';

export const TRAIN_HELP = `advsign train --data <dir|synthetic> [options]

  --data DIR|synthetic   GTSRB folder (Kaggle or official layout) or the built-in renderer
  --out DIR              where the model goes (default models/<data>-cnn)
  --epochs N             at most N epochs (default 30; early stopping on validation)
  --size N               input side in pixels (default 32)
  --arch NAME            ${ARCHITECTURES.join(' | ')} (default cnn4)
  --batch N              batch size (default 64)
  --lr X                 Adam learning rate (default 0.001)
  --patience N           epochs without validation gain before stopping (default 5)
  --val-fraction X       share of tracks held out for validation (default 0.1)
  --limit N              use about N training images (quick runs)
  --per-class N          synthetic images per class (default 200)
  --max-minutes X        stop after X minutes, keeping the best epoch (the cosine schedule fits in)
  --schedule NAME        cosine (default) | plateau: learning-rate schedule
  --balance X            oversample rare classes: weight ∝ frequency^-X (0 = off, 0.5 = inverse sqrt)
  --seed N               random seed (default 1)
  --no-augment           train without augmentation
  --label-smoothing X    cross-entropy against (1 − X)·one-hot + X/43 (default 0; 0.1 is common)
  --ema D                validate, keep and save the moving average of the weights (decay D per step,
                         e.g. 0.999) instead of the last step's; steadier under adversarial training
  --backend NAME         tensorflow | wasm | cpu (default: the fastest that starts)
  --quiet                no progress bars
  --workers N            extra threads sharing each batch on tfjs (default: one per spare core on wasm/cpu, 0 on tensorflow)
  --engine ort|tfjs      where training steps run (default: ort when it loads and the model's training graph
                         exports, FGSM/PGD adversarial and IBP training included; TRADES runs on tfjs only)
${ADVERSARIAL_HELP}
${IBP_TRAINING_HELP}`;

export async function trainCommand(argv: string[]): Promise<void> {
  const f = parseFlags(
    argv,
    {
      data: { type: 'string' },
      out: { type: 'string' },
      epochs: { type: 'string' },
      size: { type: 'string' },
      arch: { type: 'string' },
      batch: { type: 'string' },
      lr: { type: 'string' },
      patience: { type: 'string' },
      'val-fraction': { type: 'string' },
      limit: { type: 'string' },
      'per-class': { type: 'string' },
      'max-minutes': { type: 'string' },
      seed: { type: 'string' },
      'no-augment': { type: 'boolean' },
      backend: { type: 'string' },
      quiet: { type: 'boolean' },
      schedule: { type: 'string' },
      balance: { type: 'string' },
      workers: { type: 'string' },
      'label-smoothing': { type: 'string' },
      ema: { type: 'string' },
      engine: { type: 'string' },
      ...ADVERSARIAL_FLAGS,
      ...IBP_TRAINING_FLAGS,
    },
    'train',
  );
  const data = required(f, 'data', 'train');
  const arch = str(f, 'arch', 'cnn4') as string;
  if (!(ARCHITECTURES as readonly string[]).includes(arch)) {
    throw new UserError(`unknown --arch '${arch}': use one of ${ARCHITECTURES.join(', ')}`);
  }
  const size = int(f, 'size', 32, 8, 256);
  const epochs = int(f, 'epochs', DEFAULT_TRAIN.epochs, 1, 1000);
  const batchSize = int(f, 'batch', DEFAULT_TRAIN.batchSize, 1, 4096);
  const learningRate = num(f, 'lr', DEFAULT_TRAIN.learningRate, 1e-7, 1);
  const patience = int(f, 'patience', DEFAULT_TRAIN.patience, 1, 1000);
  const valFraction = num(f, 'val-fraction', 0.1, 0.01, 0.5);
  const seed = int(f, 'seed', 1, 0);
  const limit = f.limit !== undefined ? int(f, 'limit', 0, 1) : undefined;
  const perClass = f['per-class'] !== undefined ? int(f, 'per-class', 200, 1, 100000) : undefined;
  const maxMinutes = f['max-minutes'] !== undefined ? num(f, 'max-minutes', 0, 0.01, 1e6) : undefined;
  const balance = num(f, 'balance', 0, 0, 1);
  const labelSmoothing = num(f, 'label-smoothing', 0, 0, 0.99);
  const emaDecay = f.ema !== undefined ? num(f, 'ema', 0, 0.5, 0.999999) : undefined;
  const sched = str(f, 'schedule', 'cosine');
  if (sched !== 'cosine' && sched !== 'plateau') throw new UserError(`--schedule must be cosine or plateau, got '${sched}'`);
  const out = path.resolve(str(f, 'out') ?? path.join('models', `${isSynthetic(data) ? 'synthetic' : path.basename(path.resolve(data))}-cnn`));
  checkWritable(out, 'folder'); // before the data is read and the epochs run
  const progress = !f.quiet;
  // Adversarial training flags are validated here, before the data is read (see src/defense).
  const adv = addAdversarialTraining(f);
  const ibp = parseIbpTraining(f, arch);
  // TRADES steps run on tfjs only: it defaults there, and --engine ort is refused for it.
  const tfjsOnly = adv?.method === 'trades' ? 'TRADES' : null;
  const engine = str(f, 'engine') ?? (tfjsOnly ? 'tfjs' : 'auto');
  if (engine !== 'auto') parseEngineName(engine);
  if (engine === 'ort' && tfjsOnly) throw new UserError(`--engine ort cannot run ${tfjsOnly} training (its steps run on tfjs): use --engine tfjs`);

  let stop = false;
  // Ctrl-C (or a service manager's SIGTERM) ends training after the current batch, keeping
  // the best epoch; a second one quits at once (checkpoints are written atomically anyway).
  const onSigint = () => {
    if (stop) process.exit(130);
    stop = true;
    process.stderr.write('\ninterrupted: finishing this batch and saving the best epoch so far (Ctrl-C again to quit now)\n');
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  const backend = await initBackend(str(f, 'backend'));
  const init = adv ? await adv.loadInit() : undefined;
  if (ibp && init) parseIbpTraining(f, init.arch);
  const log = (msg: string) => {
    if (progress) process.stderr.write(msg + '\n');
  };
  const workers = f.workers !== undefined ? int(f, 'workers', 0, 0, 64) : defaultWorkerCount(backend.backend);
  log(`tfjs backend: ${backend.backend}${workers ? `, ${workers + 1} threads (data-parallel) when training runs on tfjs` : ''}`);

  const all = await loadDataset(data, { split: 'train', size, limit, perClass, progress });
  if (stop) throw new UserError('interrupted before training started: nothing saved');
  const { train, val } = splitByGroup(all, valFraction, seed);
  if (train.n === 0 || val.n === 0) throw new UserError(`not enough data in ${data} to hold out a validation split (${all.n} images)`);
  log(`train ${train.n} images, validation ${val.n} images (split by track)`);

  const advRun = adv ? await adv.prepare({ init, train, val, batchSize, seed, log }) : undefined;
  const ibpRun = ibp ? ibpTrainingRun(ibp, val, labelSmoothing) : undefined;
  const result = await trainClassifier(train, val, {
    arch: (init?.arch ?? arch) as Architecture,
    epochs,
    batchSize,
    learningRate,
    seed,
    patience,
    augment: !f['no-augment'],
    checkpointDir: out + '.checkpoints',
    maxSeconds: maxMinutes ? maxMinutes * 60 : undefined,
    progress,
    shouldStop: () => stop,
    schedule: sched,
    balance,
    initialModel: init?.model,
    adversarial: advRun?.planner,
    validationScore: advRun?.validationScore ?? ibpRun?.validationScore,
    workers,
    lossPlan: ibpRun?.lossPlan ?? (labelSmoothing ? () => ({ labelSmoothing }) : undefined),
    engine,
    emaDecay,
    onEngine: (e) => log(`training engine: ${e.engine} (${e.ort ? `${e.reason}, ${e.ort.threads} threads` : e.reason})`),
  });
  const adversarialCard = advRun ? await advRun.finish(result) : undefined;
  const pct = (v?: number) => (v == null ? 'n/a' : `${(v * 100).toFixed(2)}%`);
  if (result.history.length === 0) throw new UserError('training stopped before the first epoch finished: nothing saved');

  // Test accuracy when the data has a test split (GTSRB folders; the renderer makes its own).
  let testAccuracy: number | undefined;
  let testN: number | undefined;
  try {
    const test = await loadDataset(data, { split: 'test', size, progress });
    // A stop check that never stops: only to yield between batches, so a second signal still exits.
    testAccuracy = await accuracy(result.classifier, test, () => false);
    testN = test.n;
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    log(`no test split evaluated: ${e.message}`);
  }
  const card: ModelCard = {
    name: path.basename(out),
    architecture: init?.arch ?? arch,
    inputSize: size,
    numClasses: 43,
    classNames: [...CLASS_NAMES],
    input: 'float32 NHWC RGB in [0, 1]; normalisation is inside the model; outputs are logits',
    data: {
      source: isSynthetic(data) ? 'synthetic (advsign renderer)' : path.basename(path.resolve(data)),
      trainImages: train.n,
      validationImages: val.n,
      testImages: testN,
      split: `validation = ${(valFraction * 100).toFixed(0)}% of tracks (split by track, never by image), seed ${seed}`,
      preprocessing: 'ROI crop with 10% margin, resized to input size',
    },
    training: {
      optimizer:
        sched === 'cosine' ? `Adam, lr ${learningRate} with cosine decay to 1%` : `Adam lr ${learningRate}, halved after 2 epochs without validation gain`,
      batchSize,
      classBalance: balance,
      ...(labelSmoothing ? { labelSmoothing } : {}),
      ...(emaDecay !== undefined ? { weightAverage: `exponential moving average of the weights, decay ${emaDecay} per step` } : {}),
      augmentation: f['no-augment'] ? 'none' : 'rotation ±10°, scale 0.92–1.1, shift ±6%, brightness 0.7–1.3, contrast 0.8–1.2',
      // The exact command, so a card says how to reproduce its model.
      command: ['advsign', 'train', ...argv].join(' '),
      // How the --init model was made (and its own ancestors), oldest first.
      ...(init ? { lineage: lineageOf(readCard(init.dir), path.basename(path.resolve(init.dir))) } : {}),
      epochsRun: result.history.length,
      bestEpoch: result.bestEpoch,
      seed,
      selectedBy: advRun?.selection
        ? `${advRun.selection}: ${pct(result.bestValScore)}`
        : ibpRun
          ? `${ibpRun.card.selection}: ${pct(result.bestValScore)}`
          : 'clean validation accuracy',
      seconds: Math.round(result.seconds),
      engine: result.engine.engine,
      backend: backend.backend,
      threads: result.engine.ort?.threads ?? workers + 1,
      interrupted: result.interrupted,
      history: result.history,
    },
    cleanAccuracy: { validation: result.bestValAccuracy, test: testAccuracy },
    robustAccuracy: {},
    ...(adversarialCard ? { adversarialTraining: adversarialCard } : {}),
    ...(ibpRun ? { certifiedTraining: ibpRun.card } : {}),
    createdBy: `advsign ${version()}`,
    createdAt: new Date().toISOString(),
  };
  await saveModel(result.model, out, card);
  fs.rmSync(out + '.checkpoints', { recursive: true, force: true });
  // Only now: a signal left pending by a handler removed earlier would be dropped unseen.
  process.off('SIGINT', onSigint);
  process.off('SIGTERM', onSigint);
  console.log(
    `saved ${path.relative(process.cwd(), out) || out}: validation ${pct(result.bestValAccuracy)}, test ${pct(testAccuracy)}, ` +
      `${result.history.length} epochs in ${result.seconds.toFixed(0)} s on ${result.engine.engine === 'ort' ? 'ort' : backend.backend}`,
  );
}
