/**
 * The classroom pieces of the daemon, in one object the socket and HTTP layers share: the
 * virtual stickers (StickerLibrary), the print jobs (PrintJobs) and what each page draws
 * (ClientViews). It tells the live loop, frame by frame, which sticker to draw and which images
 * to encode, and turns a finished print job into the virtual sticker in use.
 */
import * as path from 'node:path';
import type { Classifier } from '../inference/model';
import type { Daemon } from './daemon';
import type { Logger } from './log';
import type { ServeConfig } from './config';
import type { Hello, JobMessage } from './protocol';
import { StickerLibrary } from './stickers';
import { PrintJobs, PRINT_SIGN_MM, PRINT_STEPS } from './print-jobs';
import { ClientViews } from './views';
import { stickerFromFile } from './sticker-overlay';

export interface ClassroomOptions {
  classifier: Classifier;
  daemon: Daemon;
  logger: Logger;
  config: Pick<ServeConfig, 'sticker' | 'printDir' | 'backend' | 'engine' | 'inputRange' | 'labels'>;
  /** The daemon's model folder (print jobs load it in a child process); null: no print jobs. */
  modelPath: string | null;
}

export class Classroom {
  readonly stickers = new StickerLibrary();
  readonly views = new ClientViews();
  readonly jobs: PrintJobs;

  constructor(private readonly o: ClassroomOptions) {
    this.jobs = new PrintJobs({
      modelPath: o.modelPath,
      printDir: path.resolve(o.config.printDir),
      logger: o.logger,
      backend: o.config.backend,
      engine: o.config.engine,
      modelInput: { inputRange: o.config.inputRange, labels: o.config.labels },
      unavailableReason: "print jobs need the daemon's model on disk (it runs an injected or untrained one)",
    });
    o.daemon.setDemand({ sticker: () => this.stickers.active, images: () => this.views.union() });
    this.stickers.on('change', () => o.daemon.stats.resetSticker());
    this.jobs.on('finished', (job: JobMessage, json: string) => void this.adoptJobSticker(job, json));
  }

  /** `--sticker RUN.json`: loaded before the first frame (a bad file stops the start, in one line). */
  async loadConfigured(): Promise<void> {
    const file = this.o.config.sticker;
    if (!file) return;
    const s = await stickerFromFile(file, this.o.classifier, { id: this.stickers.nextId('cli'), origin: 'cli', pdf: null });
    this.stickers.add(s);
    this.o.logger.info('sticker.loaded', { id: s.summary.id, name: s.summary.name, file, coverage: Math.round(s.overlay.coverage() * 1000) / 1000 });
  }

  /** A finished job's sticker becomes the one in use; its job message then names it. */
  private async adoptJobSticker(job: JobMessage, json: string): Promise<void> {
    try {
      const s = await stickerFromFile(json, this.o.classifier, { id: this.stickers.nextId('job'), origin: 'job', pdf: job.pdf ?? null });
      this.stickers.add(s);
      this.jobs.attachSticker(job.id, s.summary.id);
      this.o.logger.info('sticker.loaded', { id: s.summary.id, name: s.summary.name, job: job.id });
    } catch (e) {
      this.o.logger.warn('sticker.job_load_failed', { job: job.id, error: (e as Error).message.split('\n')[0] });
    }
  }

  hello(): Pick<Hello, 'stickers' | 'job' | 'printJobs'> {
    return { stickers: this.stickers.message(), job: this.jobs.current, printJobs: this.jobs.availability() };
  }

  static limits(): Pick<Hello['limits'], 'printSteps' | 'signMm'> {
    return { printSteps: PRINT_STEPS, signMm: PRINT_SIGN_MM };
  }

  close(): Promise<void> {
    return this.jobs.close();
  }
}
