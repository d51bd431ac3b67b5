/**
 * The virtual stickers the daemon knows (from --sticker, uploads and print jobs) and the one in
 * use. Bounded: the oldest unused one goes when a new one arrives past the limit. Emits
 * 'change' with a StickersMessage whenever the list or the active sticker changes.
 */
import { EventEmitter } from 'node:events';
import { UserError } from '../data/types';
import type { LoadedSticker } from './sticker-overlay';
import type { StickerSummary, StickersMessage } from './protocol';

export const MAX_STICKERS = 8;

export class StickerLibrary extends EventEmitter {
  private readonly items = new Map<string, LoadedSticker>();
  private activeId: string | null = null;
  private counter = 0;

  /** A fresh id for an origin ('upload-3', 'job-2'). */
  nextId(origin: StickerSummary['origin']): string {
    return `${origin}-${++this.counter}`;
  }

  /** Adds a sticker and makes it the active one. */
  add(s: LoadedSticker): void {
    this.items.set(s.summary.id, s);
    this.activeId = s.summary.id;
    while (this.items.size > MAX_STICKERS) {
      const oldest = [...this.items.keys()].find((k) => k !== this.activeId);
      if (oldest === undefined) break;
      this.items.delete(oldest);
    }
    this.emit('change', this.message());
  }

  /** Makes a known sticker active, or clears it (null). */
  select(id: string | null): void {
    if (id !== null && !this.items.has(id)) throw new UserError(`no sticker '${id.slice(0, 40)}' (known: ${[...this.items.keys()].join(', ') || 'none'})`);
    this.activeId = id;
    this.emit('change', this.message());
  }

  get active(): LoadedSticker | null {
    return this.activeId ? (this.items.get(this.activeId) ?? null) : null;
  }

  has(id: string): boolean {
    return this.items.has(id);
  }

  message(): StickersMessage {
    return { active: this.activeId, items: [...this.items.values()].map((s) => s.summary) };
  }
}
