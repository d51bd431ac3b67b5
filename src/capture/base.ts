/** Shared plumbing for frame sources: status changes, sequence numbers, safe 'error' events. */
import { EventEmitter } from 'node:events';
import type { Frame, FrameSource, SourceState, SourceStatus } from './types';

export abstract class BaseSource extends EventEmitter implements FrameSource {
  private _status: SourceStatus;
  private seqNo = 0;
  /** Frames dropped inside the source (decoder busy). */
  dropped = 0;

  constructor(readonly name: string) {
    super();
    this._status = { state: 'idle', source: name, at: Date.now() };
  }

  get status(): SourceStatus {
    return this._status;
  }

  abstract start(): Promise<void>;
  abstract stop(): Promise<void>;

  protected setStatus(state: SourceState, message?: string, attempt?: number, final = false): void {
    const s = this._status;
    if (s.state === state && s.message === message && s.attempt === attempt && !!s.final === final) return;
    this._status = { state, source: this.name, at: Date.now(), ...(message ? { message } : {}), ...(attempt ? { attempt } : {}), ...(final ? { final } : {}) };
    this.emit('status', this._status);
  }

  protected emitFrame(f: Omit<Frame, 'seq'>): void {
    if (this._status.state !== 'running') this.setStatus('running');
    this.emit('frame', { ...f, seq: this.seqNo++ });
  }

  /** 'error' without a listener would throw from emit(): a daemon must never die of a camera error. */
  protected reportError(e: unknown): void {
    if (this.listenerCount('error') > 0) this.emit('error', e instanceof Error ? e : new Error(String(e)));
  }
}
