/**
 * Splits a byte stream of concatenated JPEGs (ffmpeg `-f image2pipe -c:v mjpeg`, rpicam-vid
 * `--codec mjpeg`, an MJPEG camera) into whole JPEG files, whatever the chunking.
 *
 * A plain search for FF D9 is wrong: EXIF/APPn segments may carry a thumbnail JPEG with its own
 * EOI. So the splitter walks the marker segments by their lengths, and only scans for markers
 * inside entropy-coded data after SOS, where FF is always stuffed (FF 00) or a restart marker.
 * State survives between chunks, so each byte is looked at about once; the buffer grows by
 * doubling (no quadratic concatenation with small chunks).
 */

const enum State {
  Seek,
  Marker,
  Entropy,
}

export interface MjpegSplitterOptions {
  /** A frame larger than this is garbage: dropped, and the splitter resynchronises. */
  maxFrameBytes?: number;
}

export class MjpegSplitter {
  private buf = Buffer.alloc(64 * 1024);
  private len = 0;
  /** Scan cursor (may run past `len` while a segment's length says more bytes are coming). */
  private pos = 0;
  private start = 0;
  private state = State.Seek;
  private readonly maxFrameBytes: number;
  /** Bytes thrown away while searching for a frame start, and frames dropped as corrupt. */
  discardedBytes = 0;
  corruptFrames = 0;

  constructor(opts: MjpegSplitterOptions = {}) {
    this.maxFrameBytes = opts.maxFrameBytes ?? 32 * 1024 * 1024;
  }

  /** Feeds a chunk; returns the JPEGs it completed (each a fresh Buffer the caller owns). */
  push(chunk: Uint8Array): Buffer[] {
    this.append(chunk);
    const out: Buffer[] = [];
    const b = this.buf;
    for (;;) {
      if (this.state === State.Seek) {
        const i = this.view().indexOf(0xd8, Math.max(this.pos, 1));
        if (i < 0) {
          // Keep a trailing FF: it may be the first half of an SOI split across chunks.
          const keep = this.len > 0 && b[this.len - 1] === 0xff ? 1 : 0;
          this.discardedBytes += this.len - keep;
          this.consume(this.len - keep);
          this.pos = this.len;
          break;
        }
        if (b[i - 1] !== 0xff) {
          this.pos = i + 1;
          continue;
        }
        this.discardedBytes += i - 1;
        this.consume(i - 1);
        this.start = 0;
        this.pos = 2;
        this.state = State.Marker;
        continue;
      }
      if (this.len - this.start > this.maxFrameBytes) {
        this.corruptFrames++;
        this.resync();
        continue;
      }
      if (this.state === State.Marker) {
        if (this.pos + 1 >= this.len) break;
        if (b[this.pos] !== 0xff) {
          this.corruptFrames++;
          this.resync();
          continue;
        }
        const m = b[this.pos + 1];
        if (m === 0xff) {
          // fill byte before a marker
          this.pos++;
          continue;
        }
        if (m === 0xd9) {
          // EOI: a whole frame
          const end = this.pos + 2;
          out.push(Buffer.from(b.subarray(this.start, end)));
          this.consume(end);
          this.pos = 0;
          this.state = State.Seek;
          continue;
        }
        if (m === 0xd8) {
          // a new SOI: the previous frame was truncated
          this.corruptFrames++;
          this.consume(this.pos);
          this.start = 0;
          this.pos = 2;
          continue;
        }
        if ((m >= 0xd0 && m <= 0xd7) || m === 0x01) {
          // markers without a length
          this.pos += 2;
          continue;
        }
        if (this.pos + 3 >= this.len) break;
        const segLen = (b[this.pos + 2] << 8) | b[this.pos + 3];
        if (segLen < 2) {
          this.corruptFrames++;
          this.resync();
          continue;
        }
        this.pos += 2 + segLen;
        if (m === 0xda) this.state = State.Entropy;
        continue;
      }
      // Entropy-coded data: the next FF not followed by 00 / RSTn / FF is a marker.
      if (this.pos >= this.len) break;
      const i = this.view().indexOf(0xff, this.pos);
      if (i < 0 || i + 1 >= this.len) {
        this.pos = i < 0 ? this.len : i;
        break;
      }
      const n = b[i + 1];
      if (n === 0x00 || (n >= 0xd0 && n <= 0xd7)) this.pos = i + 2;
      else if (n === 0xff) this.pos = i + 1;
      else {
        this.pos = i;
        this.state = State.Marker;
      }
    }
    return out;
  }

  /** Bytes held waiting for the rest of a frame. */
  get buffered(): number {
    return this.len;
  }

  reset(): void {
    this.len = 0;
    this.pos = 0;
    this.start = 0;
    this.state = State.Seek;
  }

  private view(): Buffer {
    return this.buf.subarray(0, this.len);
  }

  private append(chunk: Uint8Array): void {
    if (this.len + chunk.length > this.buf.length) {
      let cap = this.buf.length;
      while (cap < this.len + chunk.length) cap *= 2;
      const nb = Buffer.allocUnsafe(cap);
      this.buf.copy(nb, 0, 0, this.len);
      this.buf = nb;
    }
    this.buf.set(chunk, this.len);
    this.len += chunk.length;
  }

  /** Drops the first n bytes, shifting the cursor with them. */
  private consume(n: number): void {
    if (n <= 0) return;
    this.buf.copyWithin(0, n, this.len);
    this.len -= n;
    this.pos -= n;
    this.start = Math.max(0, this.start - n);
  }

  /** Abandons the current frame and searches for the next SOI after its start. */
  private resync(): void {
    this.consume(this.start + 1);
    this.discardedBytes += 1;
    this.pos = 0;
    this.state = State.Seek;
  }
}
