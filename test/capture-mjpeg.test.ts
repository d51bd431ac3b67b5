import * as assert from 'node:assert/strict';
import sharp from 'sharp';
import { MjpegSplitter } from '../src/capture/mjpeg';
import { createRng } from '../src/data/random';

async function jpeg(w: number, h: number, seed: number): Promise<Buffer> {
  const rng = createRng(seed);
  const raw = Buffer.alloc(w * h * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = Math.floor(rng() * 256);
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } })
    .jpeg({ quality: 70 })
    .toBuffer();
}

/** Inserts an APP1 segment holding a whole thumbnail JPEG (its own FF D8 … FF D9) after SOI. */
function withThumbnail(j: Buffer, thumb: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), thumb]);
  const seg = Buffer.alloc(4);
  seg[0] = 0xff;
  seg[1] = 0xe1;
  seg.writeUInt16BE(body.length + 2, 2);
  return Buffer.concat([j.subarray(0, 2), seg, body, j.subarray(2)]);
}

/** A JPEG-shaped byte string whose entropy data holds stuffed FF 00, restart markers and fill bytes. */
function handMade(): Buffer {
  return Buffer.from([
    0xff,
    0xd8, // SOI
    0xff,
    0xe0,
    0x00,
    0x06,
    0x4a,
    0x46,
    0xff,
    0xd9, // APP0 of length 6 whose payload contains FF D9
    0xff,
    0xff,
    0xda,
    0x00,
    0x04,
    0x01,
    0x02, // fill byte, SOS header
    0x11,
    0xff,
    0x00,
    0x22,
    0xff,
    0xd3,
    0x33,
    0xff,
    0xff,
    0x00,
    0x44, // entropy: FF00, RST3, FF fill
    0xff,
    0xd9, // EOI
  ]);
}

function cut(stream: Buffer, seed: number, maxChunk: number): Buffer[] {
  const rng = createRng(seed);
  const out: Buffer[] = [];
  for (let i = 0; i < stream.length;) {
    const n = 1 + Math.floor(rng() * maxChunk);
    out.push(stream.subarray(i, i + n));
    i += n;
  }
  return out;
}

describe('capture: MJPEG splitter', function () {
  this.timeout(20000);
  let frames: Buffer[];
  let stream: Buffer;

  before(async () => {
    const a = await jpeg(64, 48, 1);
    const b = await jpeg(33, 17, 2);
    const c = withThumbnail(await jpeg(80, 60, 3), await jpeg(16, 16, 4));
    const d = handMade();
    frames = [a, b, c, d, a];
    // Garbage before the first frame and between frames (a camera's junk, a partial header).
    stream = Buffer.concat([Buffer.from([0x00, 0xff, 0x12, 0xff]), a, Buffer.from('noise'), b, c, Buffer.from([0xff]), d, a]);
  });

  it('finds every frame whatever the chunking, byte for byte', () => {
    for (const [seed, maxChunk] of [
      [1, 1],
      [2, 2],
      [3, 7],
      [4, 100],
      [5, 4096],
      [6, 1 << 20],
    ] as const) {
      const s = new MjpegSplitter();
      const got: Buffer[] = [];
      for (const ch of cut(stream, seed, maxChunk)) got.push(...s.push(ch));
      assert.equal(got.length, frames.length, `seed ${seed} max chunk ${maxChunk}`);
      got.forEach((g, i) => assert.ok(g.equals(frames[i]), `frame ${i} differs (max chunk ${maxChunk})`));
      assert.equal(s.buffered, 0);
    }
  });

  it('does not stop at an EOI inside an EXIF thumbnail', () => {
    const s = new MjpegSplitter();
    const got = s.push(frames[2]);
    assert.equal(got.length, 1);
    assert.equal(got[0].length, frames[2].length);
  });

  it('drops a truncated frame and resynchronises on the next SOI', async () => {
    const whole = await jpeg(40, 30, 9);
    const truncated = whole.subarray(0, Math.floor(whole.length / 2));
    const s = new MjpegSplitter();
    const got = [...s.push(truncated), ...s.push(whole)];
    assert.equal(got.length, 1);
    assert.ok(got[0].equals(whole));
    assert.ok(s.corruptFrames >= 1);
  });

  it('emitted frames decode with sharp', async () => {
    const s = new MjpegSplitter();
    const got = s.push(Buffer.concat([frames[0], frames[1]]));
    const meta = await Promise.all(got.map((g) => sharp(g).metadata()));
    assert.deepEqual(
      meta.map((m) => [m.width, m.height]),
      [
        [64, 48],
        [33, 17],
      ],
    );
  });

  it('bounds memory on a stream of garbage and on an endless frame', () => {
    const s = new MjpegSplitter({ maxFrameBytes: 10_000 });
    assert.equal(s.push(Buffer.alloc(50_000, 0x42)).length, 0);
    assert.ok(s.buffered <= 1);
    s.push(Buffer.from([0xff, 0xd8, 0xff, 0xda, 0x00, 0x02]));
    s.push(Buffer.alloc(20_000, 0x11)); // entropy data that never ends
    assert.ok(s.buffered < 20_000, `buffered ${s.buffered}`);
    assert.ok(s.corruptFrames >= 1);
  });
});
