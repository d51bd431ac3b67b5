/**
 * Which images each connected page draws ('view' events). The loop encodes the union only, and
 * each page is sent only its own: a phone in presentation view does not cost the daemon the
 * panels it hides, and with nobody connected nothing is encoded at all.
 */
import { IMAGE_KEYS, ImageKey } from './protocol';

export class ClientViews {
  private readonly views = new Map<string, ReadonlySet<ImageKey>>();
  private cached: ReadonlySet<ImageKey> = new Set();

  /** A new page draws everything until it says otherwise. */
  add(id: string): void {
    this.set(id, IMAGE_KEYS);
  }

  set(id: string, images: readonly ImageKey[]): void {
    this.views.set(id, new Set(images));
    this.recompute();
  }

  remove(id: string): void {
    this.views.delete(id);
    this.recompute();
  }

  get(id: string): ReadonlySet<ImageKey> {
    return this.views.get(id) ?? new Set();
  }

  /** Every image some page draws. */
  union(): ReadonlySet<ImageKey> {
    return this.cached;
  }

  private recompute(): void {
    const u = new Set<ImageKey>();
    for (const v of this.views.values()) for (const k of v) u.add(k);
    this.cached = u;
  }
}

/** Only the images in `keys` (the others are left out of the message). */
export function pickImages(images: Partial<Record<ImageKey, Buffer>>, keys: ReadonlySet<ImageKey>): Partial<Record<ImageKey, Buffer>> {
  const out: Partial<Record<ImageKey, Buffer>> = {};
  for (const k of keys) if (images[k]) out[k] = images[k];
  return out;
}
