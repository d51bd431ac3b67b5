/**
 * Print jobs: the page's Print button optimises a camera-robust (EOT) sticker for the sign in
 * view. The work runs in a child process (`advsign sticker --progress-json`), never on the live
 * loop's thread (wasm is single-threaded: streaming would stop for a minute), at a lower CPU
 * priority so the stream keeps its frame rate.
 *
 * One job at a time. The child writes into a staging folder; only when it exits cleanly and its
 * PDF is complete (%PDF … %%EOF) is the folder renamed to <printDir>/<job id>/. Cancelling kills
 * the child and deletes the staging folder: a PDF is either whole or absent, never half-written.
 * Emits 'update' (JobMessage) as it progresses, and 'finished' (job, run JSON path) on success.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../data/types';
import { CLASS_NAMES } from '../data/classes';
import { projectRoot } from '../util/paths';
import { availableCores } from '../inference/engine';
import type { StickerProgressEvent } from '../sticker/run-file';
import type { Logger } from './log';
import type { JobMessage } from './protocol';

export interface PrintJobsOptions {
  /** The daemon's model folder (null: jobs unavailable, e.g. an injected or untrained model). */
  modelPath: string | null;
  /** Why jobs are unavailable when modelPath is null. */
  unavailableReason?: string;
  printDir: string;
  logger: Logger;
  backend?: string | null;
  /** What the daemon's model expects (--input-range, --labels), passed on to the job's sticker command. */
  modelInput?: { inputRange: string | null; labels: string | null };
  /** The daemon's --engine, passed on (null: the sticker command's own default). */
  engine?: string | null;
  /** Held-out transformations the job measures (the PDF states the figure). */
  evalSamples?: number;
  /** Progress messages at most this often (ms). */
  updateMs?: number;
}

export interface PrintJobRequest {
  classId: number;
  target: number | null;
  signMm: number;
  steps: number;
  /** Who started it (a socket id): the job is cancelled if they disconnect. */
  owner: string;
}

/** The steps a page may ask for, and sign sizes (mm). */
export const PRINT_STEPS: [number, number] = [1, 1000];
export const PRINT_SIGN_MM: [number, number] = [20, 3000];

interface Running {
  job: JobMessage;
  child: ChildProcess;
  staging: string;
  owner: string;
  stderr: string;
  doneLine: boolean;
  lastEmit: number;
  cancelReason: string | null;
}

/** A complete PDF starts with %PDF- and ends with %%EOF (and a newline or two). */
export function pdfComplete(file: string): boolean {
  try {
    const b = fs.readFileSync(file);
    return b.subarray(0, 5).toString('latin1') === '%PDF-' && /%%EOF\s*$/.test(b.subarray(Math.max(0, b.length - 32)).toString('latin1'));
  } catch {
    return false;
  }
}

function className(id: number): string {
  return CLASS_NAMES[id] ?? String(id);
}

export class PrintJobs extends EventEmitter {
  private running: Running | null = null;
  private lastJob: JobMessage | null = null;
  private readonly finished = new Map<string, string>(); // job id → PDF path
  private counter = 0;

  constructor(private readonly o: PrintJobsOptions) {
    super();
  }

  availability(): { available: boolean; reason?: string } {
    return this.o.modelPath ? { available: true } : { available: false, reason: this.o.unavailableReason ?? "print jobs need the daemon's model on disk" };
  }

  /** The running job, else the last one (for a page that connects later). */
  get current(): JobMessage | null {
    return this.running?.job ?? this.lastJob;
  }

  get busy(): boolean {
    return this.running !== null;
  }

  /** The finished PDF of a job, or null (unknown id or no longer there). */
  pdfFile(id: string): string | null {
    const f = this.finished.get(id);
    return f && fs.existsSync(f) ? f : null;
  }

  /** Throws a one-line UserError when `req` cannot start now. */
  check(req: PrintJobRequest): void {
    if (!this.o.modelPath) throw new UserError(this.availability().reason ?? 'print jobs are unavailable');
    if (this.running) {
      const j = this.running.job;
      throw new UserError(`a print job is already running (${className(j.classId)}, step ${j.done}/${j.steps}): cancel it or wait for it`);
    }
    if (req.target === req.classId) throw new UserError(`the sign in view is already ${className(req.classId)} (${req.classId}): pick another target class`);
  }

  start(req: PrintJobRequest): JobMessage {
    this.check(req);
    const modelPath = this.o.modelPath as string;
    const id = `${new Date().toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-')}-${++this.counter}`;
    fs.mkdirSync(this.o.printDir, { recursive: true });
    const staging = fs.mkdtempSync(path.join(this.o.printDir, `.staging-${id}-`));
    const base = `advsign-sticker-${req.classId}-${req.target ?? 'any'}-${Math.round(req.signMm)}mm`;
    const args = [
      path.join(projectRoot(), 'bin', 'advsign.js'),
      'sticker',
      '--model',
      modelPath,
      '--sign',
      String(req.classId),
      ...(this.o.modelInput?.inputRange ? ['--input-range', this.o.modelInput.inputRange] : []),
      ...(this.o.modelInput?.labels ? ['--labels', this.o.modelInput.labels] : []),
      ...(req.target !== null ? ['--target', String(req.target)] : []),
      '--sign-mm',
      String(req.signMm),
      '--steps',
      String(req.steps),
      '--out',
      path.join(staging, `${base}.pdf`),
      '--skip-baseline',
      '--roundtrip',
      '0',
      '--eval',
      String(this.o.evalSamples ?? 100),
      '--progress-json',
      ...(this.o.backend ? ['--backend', this.o.backend] : []),
      ...(this.o.engine ? ['--engine', this.o.engine] : []),
    ];
    // The live loop keeps a core: the job's native engine gets the others (at least one).
    const env = { ...process.env, ADVSIGN_QUIET: '1', ADVSIGN_ORT_THREADS: process.env.ADVSIGN_ORT_THREADS ?? String(Math.max(1, availableCores() - 1)) };
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    // Below the live loop: on a one-core board the stream keeps its frames, the job gets the rest.
    try {
      if (child.pid) os.setPriority(child.pid, Math.min(19, os.getPriority(process.pid) + 10));
    } catch {
      /* not permitted: run at the same priority */
    }
    const job: JobMessage = {
      id,
      state: 'running',
      classId: req.classId,
      className: className(req.classId),
      target: req.target === null ? null : { classId: req.target, name: className(req.target) },
      signMm: req.signMm,
      steps: req.steps,
      phase: 'starting',
      done: 0,
      startedAt: Date.now(),
      seconds: 0,
    };
    const run: Running = { job, child, staging, owner: req.owner, stderr: '', doneLine: false, lastEmit: 0, cancelReason: null };
    this.running = run;
    this.watch(run, `${base}.pdf`);
    this.o.logger.info('print.job_started', { id, classId: req.classId, target: req.target, signMm: req.signMm, steps: req.steps });
    this.emit('update', { ...job });
    return { ...job };
  }

  private watch(run: Running, pdfName: string): void {
    let buf = '';
    run.child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        this.onLine(run, line);
      }
    });
    run.child.stderr!.on('data', (d: Buffer) => {
      run.stderr = (run.stderr + d.toString()).slice(-4000);
    });
    run.child.on('error', (e) => this.finish(run, 'failed', `could not start the sticker job: ${e.message}`));
    run.child.on('close', (code, signal) => {
      if (run.cancelReason) return this.finish(run, 'cancelled', run.cancelReason);
      const pdf = path.join(run.staging, pdfName);
      if (code === 0 && run.doneLine && pdfComplete(pdf)) return this.publish(run, pdfName);
      const err = /advsign: (?:error|internal error): (.*)/.exec(run.stderr)?.[1];
      this.finish(run, 'failed', err ?? (signal ? `the sticker job was killed (${signal})` : `the sticker job failed (exit code ${code})`));
    });
  }

  private onLine(run: Running, line: string): void {
    let e: StickerProgressEvent;
    try {
      e = JSON.parse(line) as StickerProgressEvent;
    } catch {
      return; // not ours (a stray log line)
    }
    const j = run.job;
    if (e.event === 'done') {
      run.doneLine = true;
      return;
    }
    if (e.event !== 'progress') return;
    const phaseChanged = j.phase !== e.phase;
    j.phase = e.phase;
    if (e.phase === 'optimise') j.done = e.done;
    j.seconds = Math.round((Date.now() - j.startedAt) / 100) / 10;
    const now = Date.now();
    if (phaseChanged || now - run.lastEmit >= (this.o.updateMs ?? 250)) {
      run.lastEmit = now;
      this.emit('update', { ...j });
    }
  }

  /** Moves the staging folder into place: the job's files appear all at once. */
  private publish(run: Running, pdfName: string): void {
    const dir = path.join(this.o.printDir, run.job.id);
    try {
      fs.renameSync(run.staging, dir);
    } catch (e) {
      return this.finish(run, 'failed', `could not keep the job's files: ${(e as Error).message}`);
    }
    this.finished.set(run.job.id, path.join(dir, pdfName));
    run.job.pdf = `/api/jobs/${run.job.id}/${pdfName}`;
    run.staging = '';
    this.finish(run, 'done');
    this.emit('finished', { ...run.job }, path.join(dir, pdfName.replace(/\.pdf$/, '.json')));
  }

  private finish(run: Running, state: JobMessage['state'], message?: string): void {
    if (this.running !== run) return;
    this.running = null;
    if (run.staging) fs.rmSync(run.staging, { recursive: true, force: true });
    const j = run.job;
    j.state = state;
    j.phase = 'finished';
    j.seconds = Math.round((Date.now() - j.startedAt) / 100) / 10;
    if (message) j.message = message;
    this.lastJob = j;
    const fields = { id: j.id, seconds: j.seconds, ...(message ? { message } : {}) };
    if (state === 'done') this.o.logger.info('print.job_done', { ...fields, pdf: j.pdf });
    else if (state === 'cancelled') this.o.logger.info('print.job_cancelled', fields);
    else this.o.logger.warn('print.job_failed', fields);
    this.emit('update', { ...j });
  }

  /** Records the virtual sticker a finished job became, and tells the pages. */
  attachSticker(jobId: string, stickerId: string): void {
    if (this.lastJob?.id !== jobId) return;
    this.lastJob.stickerId = stickerId;
    this.emit('update', { ...this.lastJob });
  }

  /** Cancels the running job (kills the child); false when none runs. */
  cancel(reason: string): boolean {
    const run = this.running;
    if (!run) return false;
    if (run.cancelReason) return true;
    run.cancelReason = reason;
    run.child.kill('SIGTERM');
    setTimeout(() => {
      if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
    }, 2000).unref();
    return true;
  }

  /** The page that started the running job went away: nobody is left to hand it to. */
  ownerGone(owner: string): void {
    if (this.running && this.running.owner === owner) this.cancel('the page that started this print job disconnected');
  }

  /** Stops any running job and waits for its child to exit. */
  async close(): Promise<void> {
    const run = this.running;
    if (!run) return;
    const exited = new Promise<void>((r) => run.child.once('close', () => r()));
    this.cancel('the daemon is shutting down');
    await exited;
  }
}
