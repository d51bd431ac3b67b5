/**
 * Print files for a physical attack: a PDF at real size on A4 (pdfkit) and PNGs at print DPI.
 *
 * Sizes: the sign's bounding square is `signMm` wide (600 mm for a real stop sign, ~100 mm for a
 * desk demo); every piece (each connected part of the sticker mask, or the whole sign in
 * printed-sign mode) is drawn at its physical size, 1 mm = 72/25.4 pt, with a vector cut line.
 * Pieces larger than the printable area of A4 are tiled over several pages with an overlap and
 * registration crosses outside the artwork. Every page carries a 100 mm scale bar so a printer
 * that silently scaled ("fit to page") is caught before cutting. Page 1 is an overview: clean
 * and adversarial previews, where each piece goes (offsets in mm), the measured success rates,
 * instructions, and a calibration strip of the palette colours (photograph it to measure your
 * printer's real palette for --palette).
 *
 * Artwork is sampled from the optimised sticker (bilinear, as the EOT warp sees it) and from a
 * crisp high-resolution rendering of the clean sign; colours extend 2 mm past the cut line
 * (bleed) so an imprecise cut leaves no white rim.
 */
import sharp from 'sharp';
import { renderSignRGBA } from '../data/synthetic';
import { CLASS_NAMES } from '../data/classes';
import { UserError } from '../data/types';
import type { StickerResult } from './optimize';
import { alphaOf, Component, components, rasterizeMask } from './masks';
import { DEFAULT_PALETTE, Palette } from './palette';
import { stripLayout } from './calibration-strip';

/** Points per millimetre: 1 in = 72 pt = 25.4 mm. */
export const MM = 72 / 25.4;
export const A4_MM = { width: 210, height: 297 } as const;
/** Page layout, mm. */
const MARGIN = 10, HEADER = 14, FOOTER = 24, MARK_ROOM = 9, LABEL_ROOM = 7, GAP = 6, OVERLAP = 12;

export interface ExportOptions {
  /** Side of the sign's bounding square (its diameter for round/octagonal signs), mm. */
  signMm: number;
  /** Resolution of the PNG files (default 300). */
  dpi?: number;
  /** Colour beyond the cut line, mm (default 2). */
  bleedMm?: number;
  palette?: Palette;
  /** Extra lines for the overview page (model, measured rates…). ASCII only (built-in PDF fonts). */
  infoLines?: string[];
  /** Also print the whole adversarial sign as a piece (default: when signMm ≤ 200, a desk demo). */
  includeFullSign?: boolean;
  /** Compress PDF streams (default true; tests turn it off to read the content streams). */
  compress?: boolean;
  /** Longest side of the full-sign PNG (default 4096 px; lower DPI for big signs). */
  signPngMaxPx?: number;
  /** Longest side of images embedded in the PDF (default 3000 px). */
  embedMaxPx?: number;
}

export interface PieceInfo {
  /** 'A', 'B', … for sticker parts; 'S' for the whole sign. */
  label: string;
  kind: 'sticker' | 'sign';
  /** Where it goes: its bounding box, mm from the top-left corner of the sign's bounding square. */
  xMm: number;
  yMm: number;
  widthMm: number;
  heightMm: number;
  /** Number of A4 tiles it was split into, and the pages (1-based) they are on. */
  tiles: number;
  pages: number[];
}

export interface ExportResult {
  pdf: Buffer;
  /** The sticker alone (transparent outside the cut line) — null in printed-sign mode. */
  stickerPng: Buffer | null;
  stickerPngDpi: number | null;
  /** The whole adversarial sign (transparent outside the sign). */
  signPng: Buffer;
  signPngDpi: number;
  pieces: PieceInfo[];
  pageCount: number;
}

// Minimal typing of the pdfkit calls used here (pdfkit ships no types).
interface PdfImage { width: number; height: number }
interface PdfDoc {
  on(ev: 'data', cb: (c: Buffer) => void): PdfDoc;
  on(ev: 'end', cb: () => void): PdfDoc;
  on(ev: 'error', cb: (e: Error) => void): PdfDoc;
  addPage(opts?: Record<string, unknown>): PdfDoc;
  openImage(src: Buffer): PdfImage;
  image(src: Buffer | PdfImage, x: number, y: number, opts: { width: number; height: number }): PdfDoc;
  rect(x: number, y: number, w: number, h: number): PdfDoc;
  circle(x: number, y: number, r: number): PdfDoc;
  moveTo(x: number, y: number): PdfDoc;
  lineTo(x: number, y: number): PdfDoc;
  closePath(): PdfDoc;
  lineWidth(w: number): PdfDoc;
  lineJoin(j: string): PdfDoc;
  dash(len: number, opts?: { space?: number }): PdfDoc;
  undash(): PdfDoc;
  fill(color?: string): PdfDoc;
  stroke(color?: string): PdfDoc;
  fillColor(c: string): PdfDoc;
  save(): PdfDoc;
  restore(): PdfDoc;
  clip(): PdfDoc;
  font(name: string): PdfDoc;
  fontSize(n: number): PdfDoc;
  text(s: string, x: number, y: number, opts?: { width?: number; align?: 'left' | 'center' | 'right'; lineBreak?: boolean; lineGap?: number }): PdfDoc;
  widthOfString(s: string): number;
  heightOfString(s: string, opts?: { width?: number }): number;
  end(): void;
}
type PdfCtor = new (opts: Record<string, unknown>) => PdfDoc;

const mm = (v: number): number => v * MM;

// ---------------------------------------------------------------------------
// Sampling the artwork

/** Fills pixels where known < threshold from their known neighbours, outwards (for the bleed). */
function extend(rgb: Float32Array, known: Float32Array, size: number, threshold = 0.02): Float32Array {
  const out = Float32Array.from(rgb);
  let have = Uint8Array.from(known, (k) => (k >= threshold ? 1 : 0));
  for (let iter = 0; iter < size; iter++) {
    const next = Uint8Array.from(have);
    let changed = false;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const i = y * size + x;
        if (have[i]) continue;
        let r = 0, g = 0, b = 0, k = 0;
        for (const [dx, dy] of [[1, 0], [-1, 0], [0, 1], [0, -1], [1, 1], [-1, -1], [1, -1], [-1, 1]]) {
          const nx = x + dx, ny = y + dy;
          if (nx < 0 || ny < 0 || nx >= size || ny >= size) continue;
          const j = ny * size + nx;
          if (!have[j]) continue;
          r += out[3 * j]; g += out[3 * j + 1]; b += out[3 * j + 2]; k++;
        }
        if (k) { out[3 * i] = r / k; out[3 * i + 1] = g / k; out[3 * i + 2] = b / k; next[i] = 1; changed = true; }
      }
    }
    have = next;
    if (!changed) break;
  }
  return out;
}

/** Bilinear lookup at relative (u, v) ∈ [0, 1]² of a size² map with `ch` channels (edge-clamped). */
function sample(img: Float32Array, size: number, ch: number, u: number, v: number, out: number[], stride = ch, offset = 0): void {
  const fx = Math.min(size - 1, Math.max(0, u * size - 0.5)), fy = Math.min(size - 1, Math.max(0, v * size - 0.5));
  const x0 = Math.floor(fx), y0 = Math.floor(fy), x1 = Math.min(size - 1, x0 + 1), y1 = Math.min(size - 1, y0 + 1);
  const ax = fx - x0, ay = fy - y0;
  for (let c = 0; c < ch; c++) {
    const p = (x: number, y: number) => img[(y * size + x) * stride + offset + c];
    out[c] = (p(x0, y0) * (1 - ax) + p(x1, y0) * ax) * (1 - ay) + (p(x0, y1) * (1 - ax) + p(x1, y1) * ax) * ay;
  }
}

/** Chamfer distance (in pixels) to the nearest pixel with field ≥ 0.5. */
function distanceMap(field: Float32Array, size: number): Float32Array {
  const d = new Float32Array(size * size);
  for (let i = 0; i < d.length; i++) d[i] = field[i] >= 0.5 ? 0 : 1e9;
  const D = Math.SQRT2;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = y * size + x;
      if (x > 0) d[i] = Math.min(d[i], d[i - 1] + 1);
      if (y > 0) {
        d[i] = Math.min(d[i], d[i - size] + 1);
        if (x > 0) d[i] = Math.min(d[i], d[i - size - 1] + D);
        if (x < size - 1) d[i] = Math.min(d[i], d[i - size + 1] + D);
      }
    }
  }
  for (let y = size - 1; y >= 0; y--) {
    for (let x = size - 1; x >= 0; x--) {
      const i = y * size + x;
      if (x < size - 1) d[i] = Math.min(d[i], d[i + 1] + 1);
      if (y < size - 1) {
        d[i] = Math.min(d[i], d[i + size] + 1);
        if (x < size - 1) d[i] = Math.min(d[i], d[i + size + 1] + D);
        if (x > 0) d[i] = Math.min(d[i], d[i + size - 1] + D);
      }
    }
  }
  return d;
}

/** Everything needed to draw the attack at any resolution. */
interface Artwork {
  signMm: number;
  /** High-resolution grid (Rc²) over the sign's bounding square. */
  Rc: number;
  cleanHi: Float32Array;
  alphaHi: Float32Array;
  /** Cut field: what is printed and cut out (sticker mask ∧ sign, or the sign). */
  cutHi: Float32Array;
  /** Distance to the cut region, Rc pixels. */
  cutDist: Float32Array;
  /** Low-resolution printed colours, extended past their region for the bleed (R²×3). */
  inkExt: Float32Array;
  /** Sign mode: perturbation δ (R²×3) extended. */
  deltaExt: Float32Array | null;
  R: number;
  mode: 'sticker' | 'sign';
}

function buildArtwork(r: StickerResult, signMm: number): Artwork {
  const R = r.canvasSize;
  // ~0.5 mm per cut-grid pixel, between 512 and 1024 (the renderer's limit).
  const Rc = Math.max(512, Math.min(1024, Math.ceil(signMm * 2)));
  const hi = renderSignRGBA(r.classId, Rc, { margin: 0 }).rgba;
  const alphaHi = alphaOf(hi);
  const cutHi = r.maskSpec ? rasterizeMask(r.maskSpec, Rc, alphaHi, 2) : alphaHi;
  let inkExt: Float32Array, deltaExt: Float32Array | null = null;
  if (r.mode === 'sticker') {
    inkExt = extend(r.sticker, r.printed, R);
  } else {
    const delta = new Float32Array(R * R * 3);
    for (let i = 0; i < R * R; i++) for (let c = 0; c < 3; c++) delta[3 * i + c] = r.adversarial[4 * i + c] - r.clean[4 * i + c];
    const alpha = alphaOf(r.clean);
    deltaExt = extend(delta, alpha, R, 0.5);
    inkExt = extend(r.sticker, alpha, R, 0.5);
  }
  return { signMm, Rc, cleanHi: hi, alphaHi, cutHi, cutDist: distanceMap(cutHi, Rc), inkExt, deltaExt, R, mode: r.mode };
}

/**
 * The adversarial sign's colour at relative (u, v): sticker mode mixes the crisp clean sign and the
 * sticker by the high-resolution mask; sign mode adds the perturbation to the crisp clean sign.
 */
function adversarialAt(a: Artwork, u: number, v: number, out: number[], tmp: number[]): void {
  const clean = [0, 0, 0, 0];
  sample(a.cleanHi, a.Rc, 4, u, v, clean);
  if (a.mode === 'sticker') {
    sample(a.cutHi, a.Rc, 1, u, v, tmp);
    const m = tmp[0];
    sample(a.inkExt, a.R, 3, u, v, tmp);
    for (let c = 0; c < 3; c++) out[c] = clean[c] * (1 - m) + tmp[c] * m;
  } else {
    sample(a.deltaExt as Float32Array, a.R, 3, u, v, tmp);
    for (let c = 0; c < 3; c++) out[c] = Math.min(1, Math.max(0, clean[c] + tmp[c]));
  }
  out[3] = clean[3];
}

/**
 * Raster of the region [x, x+w]×[y, y+h] (mm, sign coordinates) at `dpi`. kind 'piece': printed
 * colours inside the cut region and the bleed, white beyond (or transparent with `alpha`);
 * kind 'sign': the whole adversarial sign, white/transparent outside it.
 */
function raster(a: Artwork, box: { x: number; y: number; w: number; h: number }, dpi: number, kind: 'piece' | 'sign', bleedMm: number, alpha: boolean): { data: Buffer; width: number; height: number } {
  const W = Math.max(1, Math.round((box.w / 25.4) * dpi)), H = Math.max(1, Math.round((box.h / 25.4) * dpi));
  const ch = alpha ? 4 : 3;
  const data = Buffer.alloc(W * H * ch);
  const col = [0, 0, 0, 0], tmp = [0, 0, 0, 0];
  const pxMm = a.signMm / a.Rc;
  for (let py = 0; py < H; py++) {
    const v = (box.y + ((py + 0.5) / H) * box.h) / a.signMm;
    for (let px = 0; px < W; px++) {
      const u = (box.x + ((px + 0.5) / W) * box.w) / a.signMm;
      let cover: number;
      if (kind === 'sign') {
        adversarialAt(a, u, v, col, tmp);
        cover = u < 0 || v < 0 || u > 1 || v > 1 ? 0 : col[3];
      } else {
        // Distance (mm) to the cut region, plus how far outside the sign's square we are.
        const gx = Math.min(a.Rc - 1, Math.max(0, Math.floor(u * a.Rc))), gy = Math.min(a.Rc - 1, Math.max(0, Math.floor(v * a.Rc)));
        const outside = Math.hypot(Math.max(0, -u, u - 1), Math.max(0, -v, v - 1)) * a.signMm;
        cover = a.cutDist[gy * a.Rc + gx] * pxMm + outside <= bleedMm ? 1 : 0;
        if (cover === 0) {
          // Nothing printed here: white paper (or transparent); skip the sampling.
          const o = (py * W + px) * ch;
          if (alpha) data[o + 3] = 0;
          else data.fill(255, o, o + 3);
          continue;
        }
        if (a.mode === 'sign') {
          adversarialAt(a, u, v, col, tmp);
          // Past the sign's edge (the bleed) continue the printed colours outwards.
          if (col[3] < 0.5 || outside > 0) sample(a.inkExt, a.R, 3, u, v, col);
        } else {
          sample(a.inkExt, a.R, 3, u, v, col);
        }
      }
      const o = (py * W + px) * ch;
      for (let c = 0; c < 3; c++) {
        const val = Math.min(1, Math.max(0, col[c]));
        // Opaque output is composited over white paper.
        data[o + c] = Math.round((alpha ? val : val * cover + (1 - cover)) * 255);
      }
      if (alpha) data[o + 3] = Math.round(cover * 255);
    }
  }
  return { data, width: W, height: H };
}

async function png(r: { data: Buffer; width: number; height: number }, channels: 3 | 4, dpi: number): Promise<Buffer> {
  return sharp(r.data, { raw: { width: r.width, height: r.height, channels } }).withMetadata({ density: dpi }).png({ compressionLevel: 6 }).toBuffer();
}

// ---------------------------------------------------------------------------
// Pieces, tiles and the page layout

interface Tile {
  piece: number;
  /** Tile's artwork window in piece coordinates (mm from the piece box's top-left). */
  x: number;
  y: number;
  w: number;
  h: number;
  row: number;
  col: number;
  rows: number;
  cols: number;
}

/** Splits a w×h (mm) artwork into tiles no larger than maxW×maxH overlapping by `overlap`. */
export function tileRects(w: number, h: number, maxW: number, maxH: number, overlap = OVERLAP): { x: number; y: number; w: number; h: number; row: number; col: number; rows: number; cols: number }[] {
  const split = (len: number, max: number): [number, number][] => {
    if (len <= max) return [[0, len]];
    const n = Math.ceil((len - overlap) / (max - overlap));
    const step = (len - overlap) / n;
    return Array.from({ length: n }, (_, i): [number, number] => [i * step, i * step + step + overlap]);
  };
  const xs = split(w, maxW), ys = split(h, maxH);
  const out: { x: number; y: number; w: number; h: number; row: number; col: number; rows: number; cols: number }[] = [];
  ys.forEach(([y0, y1], row) => xs.forEach(([x0, x1], col) => out.push({ x: x0, y: y0, w: x1 - x0, h: y1 - y0, row, col, rows: ys.length, cols: xs.length })));
  return out;
}

function scaleBar(doc: PdfDoc, x: number, y: number): void {
  // 100 mm: ten 10 mm blocks, alternating; the outline rectangle is exactly 100 mm wide.
  for (let i = 0; i < 10; i++) doc.rect(x + mm(i * 10), y, mm(10), mm(3)).fill(i % 2 ? '#ffffff' : '#000000');
  doc.lineWidth(0.5).rect(x, y, mm(100), mm(3)).stroke('#000000');
  for (let i = 0; i <= 100; i += 1) {
    const len = i % 10 === 0 ? 2.2 : i % 5 === 0 ? 1.5 : 0.8;
    doc.lineWidth(0.25).moveTo(x + mm(i), y + mm(3)).lineTo(x + mm(i), y + mm(3 + len)).stroke('#000000');
  }
  doc.font('Helvetica').fontSize(6.5).fillColor('#000000');
  for (let i = 0; i <= 100; i += 10) doc.text(String(i), x + mm(i) - 8, y + mm(5.4), { width: 16, align: 'center', lineBreak: false });
  doc.fontSize(7).text('100 mm scale bar: if it does not measure exactly 100 mm, reprint at 100 % ("actual size").', x + mm(104), y - 1, { width: mm(82), lineBreak: true });
}

function cross(doc: PdfDoc, x: number, y: number): void {
  const r = mm(2.5), l = mm(4.5);
  doc.lineWidth(0.4);
  doc.circle(x, y, r).stroke('#000000');
  doc.moveTo(x - l, y).lineTo(x + l, y).moveTo(x, y - l).lineTo(x, y + l).stroke('#000000');
}

function cutPath(doc: PdfDoc, outlines: [number, number][][], toPt: (p: [number, number]) => [number, number]): void {
  for (const line of outlines) {
    const [x0, y0] = toPt(line[0]);
    doc.moveTo(x0, y0);
    for (let i = 1; i < line.length; i++) {
      const [x, y] = toPt(line[i]);
      doc.lineTo(x, y);
    }
    doc.closePath();
  }
}

function className(id: number | null): string {
  return id === null ? 'any other class' : `${CLASS_NAMES[id] ?? `class ${id}`} (${id})`;
}

/** Writes the PDF and PNGs for an optimised attack. */
export async function exportSticker(r: StickerResult, o: ExportOptions): Promise<ExportResult> {
  const signMm = o.signMm;
  if (!(Number.isFinite(signMm) && signMm >= 20 && signMm <= 3000)) throw new UserError(`sign size must be 20..3000 mm, got ${signMm}`);
  const dpi = o.dpi ?? 300;
  const bleed = o.bleedMm ?? 2;
  const palette = o.palette ?? DEFAULT_PALETTE;
  const a = buildArtwork(r, signMm);

  // Pieces: connected parts of the cut region (ignoring slivers under ~4 mm²), top to bottom.
  const minPx = Math.max(4, Math.round(4 / (signMm / a.Rc) ** 2));
  const comps: Component[] = components(a.cutHi, a.Rc, minPx).sort((p, q) => p.bbox.y - q.bbox.y || p.bbox.x - q.bbox.x);
  if (comps.length === 0) throw new UserError('the sticker region is too small to print at this sign size');
  const includeFull = r.mode === 'sticker' && (o.includeFullSign ?? signMm <= 200);
  interface Art { label: string; kind: 'sticker' | 'sign'; box: { x: number; y: number; w: number; h: number }; outlines: [number, number][][]; rasterKind: 'piece' | 'sign' }
  const arts: Art[] = comps.map((c, i) => ({
    label: r.mode === 'sign' ? 'S' : String.fromCharCode(65 + (i % 26)) + (i >= 26 ? String(Math.floor(i / 26)) : ''),
    kind: r.mode === 'sign' ? 'sign' as const : 'sticker' as const,
    box: { x: c.bbox.x * signMm - bleed, y: c.bbox.y * signMm - bleed, w: c.bbox.w * signMm + 2 * bleed, h: c.bbox.h * signMm + 2 * bleed },
    outlines: c.outlines.map((l) => l.map(([x, y]): [number, number] => [x * signMm, y * signMm])),
    rasterKind: 'piece' as const,
  }));
  if (includeFull) {
    const signComps = components(a.alphaHi, a.Rc, minPx);
    arts.push({
      label: 'S', kind: 'sign', box: { x: -bleed, y: -bleed, w: signMm + 2 * bleed, h: signMm + 2 * bleed },
      outlines: signComps.flatMap((c) => c.outlines.map((l) => l.map(([x, y]): [number, number] => [x * signMm, y * signMm]))),
      rasterKind: 'sign',
    });
  }

  // PNG files at print resolution.
  const embedMax = o.embedMaxPx ?? 3000;
  let stickerPng: Buffer | null = null, stickerPngDpi: number | null = null;
  if (r.mode === 'sticker') {
    const x0 = Math.min(...arts.filter((t) => t.kind === 'sticker').map((t) => t.box.x)), y0 = Math.min(...arts.filter((t) => t.kind === 'sticker').map((t) => t.box.y));
    const x1 = Math.max(...arts.filter((t) => t.kind === 'sticker').map((t) => t.box.x + t.box.w)), y1 = Math.max(...arts.filter((t) => t.kind === 'sticker').map((t) => t.box.y + t.box.h));
    stickerPngDpi = Math.min(dpi, (8192 / Math.max(x1 - x0, y1 - y0)) * 25.4);
    stickerPng = await png(raster(a, { x: x0, y: y0, w: x1 - x0, h: y1 - y0 }, stickerPngDpi, 'piece', 0, true), 4, stickerPngDpi);
  }
  const signPngDpi = Math.min(dpi, ((o.signPngMaxPx ?? 4096) / signMm) * 25.4);
  const signPng = await png(raster(a, { x: 0, y: 0, w: signMm, h: signMm }, signPngDpi, 'sign', 0, true), 4, signPngDpi);

  // The document.
  const PDFDocument = require('pdfkit') as PdfCtor;
  const target = r.target;
  const title = r.mode === 'sticker' ? 'Adversarial sticker' : 'Printed adversarial sign';
  const doc = new PDFDocument({
    size: 'A4', margin: 0, autoFirstPage: true, compress: o.compress ?? true,
    info: { Title: `advsign ${title.toLowerCase()}: ${className(r.classId)} -> ${className(target)}`, Creator: 'advsign', Subject: `sign ${signMm} mm` },
  });
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('data', (c) => chunks.push(c));
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });
  const pageW = mm(A4_MM.width), pageH = mm(A4_MM.height);
  let pageNo = 1;
  const footer = (label: string) => {
    scaleBar(doc, mm(MARGIN), pageH - mm(FOOTER) + mm(6));
    doc.font('Helvetica').fontSize(7).fillColor('#555555')
      .text(`${label}   page ${pageNo}   advsign - for research and teaching only; never place on a public road.`, mm(MARGIN), pageH - mm(8), { width: pageW - mm(2 * MARGIN), lineBreak: false });
  };

  // Page 1: overview.
  const x0 = mm(MARGIN);
  doc.font('Helvetica-Bold').fontSize(15).fillColor('#000000').text(`${title}: ${className(r.classId)} -> ${className(target)}`, x0, mm(MARGIN), { width: pageW - 2 * x0 });
  let y = mm(MARGIN + 9);
  const prevMm = 62;
  const preview = async (kind: 'clean' | 'adv'): Promise<Buffer> => {
    const px = 600;
    const data = Buffer.alloc(px * px * 3);
    const col = [0, 0, 0, 0], tmp = [0, 0, 0, 0];
    for (let py = 0; py < px; py++) {
      for (let qx = 0; qx < px; qx++) {
        const u = (qx + 0.5) / px, v = (py + 0.5) / px;
        if (kind === 'clean') sample(a.cleanHi, a.Rc, 4, u, v, col);
        else adversarialAt(a, u, v, col, tmp);
        for (let c = 0; c < 3; c++) data[3 * (py * px + qx) + c] = Math.round((Math.min(1, Math.max(0, col[c])) * col[3] + (1 - col[3])) * 255);
      }
    }
    return sharp(data, { raw: { width: px, height: px, channels: 3 } }).png().toBuffer();
  };
  doc.image(await preview('clean'), x0, y + mm(5), { width: mm(prevMm), height: mm(prevMm) });
  doc.image(await preview('adv'), x0 + mm(prevMm + 8), y + mm(5), { width: mm(prevMm), height: mm(prevMm) });
  doc.font('Helvetica').fontSize(8).fillColor('#000000');
  doc.text('clean sign (preview, not to scale)', x0, y, { width: mm(prevMm), align: 'center', lineBreak: false });
  doc.text('with the attack (preview, not to scale)', x0 + mm(prevMm + 8), y, { width: mm(prevMm), align: 'center', lineBreak: false });
  // Piece outlines and labels on the adversarial preview.
  const px0 = x0 + mm(prevMm + 8), py0 = y + mm(5), k = mm(prevMm) / signMm;
  for (const t of arts.filter((q) => q.kind === 'sticker')) {
    doc.lineWidth(0.6);
    cutPath(doc, t.outlines, ([u, v]) => [px0 + u * k, py0 + v * k]);
    doc.stroke('#000000');
    doc.font('Helvetica-Bold').fontSize(9).fillColor('#000000');
    const lx = px0 + (t.box.x + t.box.w) * k + 2, ly = py0 + (t.box.y + t.box.h / 2) * k - 4;
    doc.rect(lx - 1, ly - 1, 10, 11).fill('#ffffff');
    doc.fillColor('#000000').text(t.label, lx, ly, { width: 8, lineBreak: false });
  }
  // Right column: facts.
  const colX = x0 + mm(2 * prevMm + 14), colW = pageW - colX - x0;
  doc.font('Helvetica').fontSize(7.5).fillColor('#000000');
  const facts = [
    `Sign: ${signMm} mm across its bounding square (${className(r.classId)}).`,
    r.mode === 'sticker' ? `Mask: ${r.maskDescription}; ${(r.areaFraction * 100).toFixed(1)} % of the sign.` : `Whole-sign perturbation, L-inf eps = ${((r.eps ?? 0) * 255).toFixed(1)}/255.`,
    `Optimised ${r.options.steps} steps x ${r.options.eotSamples} EOT samples (seed ${r.options.seed}); NPS ${r.nps.toFixed(3)}, TV ${r.tv.toFixed(3)}; palette ${r.options.palette === 'default' ? 'default (30 colours)' : r.options.palette}.`,
    ...(o.infoLines ?? []),
  ];
  doc.text(facts.join('\n'), colX, y, { width: colW, lineGap: 1.5 });
  y += Math.max(mm(prevMm + 10), doc.heightOfString(facts.join('\n'), { width: colW }) + facts.length * 1.5 + mm(4));

  // Placement table.
  doc.font('Helvetica-Bold').fontSize(10).text('Pieces and where they go', x0, y);
  y += mm(5.5);
  doc.font('Helvetica').fontSize(8);
  const pieceInfo: PieceInfo[] = arts.map((t) => ({
    label: t.label, kind: t.kind,
    xMm: t.box.x + bleed, yMm: t.box.y + bleed, widthMm: t.box.w - 2 * bleed, heightMm: t.box.h - 2 * bleed,
    tiles: 0, pages: [],
  }));
  const tilesPerArt = arts.map((t) => tileRects(t.box.w, t.box.h, A4_MM.width - 2 * MARGIN - 2 * MARK_ROOM, A4_MM.height - HEADER - FOOTER - 2 * MARK_ROOM - LABEL_ROOM - MARGIN));
  pieceInfo.forEach((p, i) => { p.tiles = tilesPerArt[i].length; });
  for (const p of pieceInfo) {
    const where = p.kind === 'sign'
      ? `the whole ${r.mode === 'sign' ? 'printed adversarial sign' : 'sign with the stickers applied (desk demo: print, cut along the outline, mount)'}, ${p.widthMm.toFixed(0)} x ${p.heightMm.toFixed(0)} mm`
      : `${p.widthMm.toFixed(1)} x ${p.heightMm.toFixed(1)} mm; its left edge ${p.xMm.toFixed(1)} mm from the sign's left edge, its top ${p.yMm.toFixed(1)} mm below the sign's top edge`;
    doc.text(`${p.label}:  ${where}${p.tiles > 1 ? ` (${p.tiles} tiles)` : ''}.`, x0 + mm(3), y, { width: pageW - 2 * x0 - mm(3) });
    y += doc.heightOfString('X') + 3;
  }
  y += mm(3);
  doc.font('Helvetica-Bold').fontSize(10).text('How to print and cut', x0, y);
  y += mm(5.5);
  const steps = [
    'Print at 100 % ("actual size", no "fit to page"). Check the 100 mm scale bar on every page with a ruler.',
    'Print on matte sticker paper (or plain paper and glue); glossy paper reflects and changes the colours the camera sees.',
    'Cut along the black line. The colour continues 2 mm beyond it (bleed) so a slightly wide cut leaves no white rim.',
    'Tiled pieces: lay the next tile over the previous one so the +-in-circle marks of the same number coincide, tape, then cut.',
    'Measure the offsets above from the top-left corner of the sign\'s bounding square: as wide as the sign and centred on it (for round and octagonal signs its top and left sides touch the sign).',
    'Calibrate: photograph the colour strip below (all four corner marks, flat, in the light you will test in), run advsign calibrate --photo strip.jpg --out palette.csv, and pass the result with --palette.',
  ];
  doc.font('Helvetica').fontSize(8);
  steps.forEach((s, i) => {
    doc.text(`${i + 1}. ${s}`, x0 + mm(3), y, { width: pageW - 2 * x0 - mm(3) });
    y += doc.heightOfString(`${i + 1}. ${s}`, { width: pageW - 2 * x0 - mm(3) }) + 2;
  });
  y += mm(3);
  // Calibration strip (layout shared with `advsign calibrate`): nothing printed in its quiet zone.
  doc.font('Helvetica-Bold').fontSize(10).fillColor('#000000').text(`Calibration strip: the ${palette.colors.length} palette colours (${palette.source}), in reading order`, x0, y);
  y += mm(5.5);
  const strip = stripLayout(palette.colors.length);
  const sx = x0 + (pageW - 2 * x0 - mm(strip.width)) / 2, sy = y + mm(strip.quietZone);
  for (const [mx, my] of strip.marks) {
    const m = strip.mark;
    doc.rect(sx + mm(mx - m.outer / 2), sy + mm(my - m.outer / 2), mm(m.outer), mm(m.outer)).fill('#000000');
    doc.rect(sx + mm(mx - m.inner / 2), sy + mm(my - m.inner / 2), mm(m.inner), mm(m.inner)).fill('#ffffff');
    doc.rect(sx + mm(mx - m.dot / 2), sy + mm(my - m.dot / 2), mm(m.dot), mm(m.dot)).fill('#000000');
  }
  palette.colors.forEach((c, i) => {
    const p = strip.patches[i];
    doc.rect(sx + mm(p.x), sy + mm(p.y), mm(p.size), mm(p.size)).fill('#' + c.map((v) => Math.round(v * 255).toString(16).padStart(2, '0')).join(''));
  });
  footer('overview');

  // Piece pages: shelf-pack the tiles onto A4 pages.
  const areaX = mm(MARGIN), areaY = mm(HEADER), areaW = pageW - 2 * areaX, areaBottom = pageH - mm(FOOTER);
  const tiles: Tile[] = arts.flatMap((_, i) => tilesPerArt[i].map((t) => ({ piece: i, ...t })));
  const images = new Map<number, PdfImage>();
  const embedDpi = (t: Art) => Math.min(dpi, (embedMax / Math.max(t.box.w, t.box.h)) * 25.4);
  let cx = areaX, cy = areaY, shelf = 0;
  let started = false;
  const newPage = () => {
    doc.addPage({ size: 'A4', margin: 0 });
    pageNo++;
    doc.font('Helvetica-Bold').fontSize(10).fillColor('#000000').text(`${title} - pieces at real size (sign ${signMm} mm)`, mm(MARGIN), mm(MARGIN - 3), { lineBreak: false });
    footer('pieces');
    cx = areaX; cy = areaY; shelf = 0;
    started = true;
  };
  for (const t of tiles) {
    const art = arts[t.piece];
    const wPt = mm(t.w + 2 * MARK_ROOM), hPt = mm(t.h + 2 * MARK_ROOM + LABEL_ROOM);
    if (!started) newPage();
    if (cx + wPt > areaX + areaW + 0.01) { cx = areaX; cy += shelf + mm(GAP); shelf = 0; }
    if (cy + hPt > areaBottom + 0.01) newPage();
    // Artwork origin on the page: the piece box's top-left, shifted so this tile's window lands here.
    const winX = cx + mm(MARK_ROOM), winY = cy + mm(LABEL_ROOM + MARK_ROOM);
    const ox = winX - mm(t.x), oy = winY - mm(t.y);
    let img = images.get(t.piece);
    if (!img) {
      const ed = embedDpi(art);
      img = doc.openImage(await png(raster(a, art.box, ed, art.rasterKind, bleed, false), 3, ed));
      images.set(t.piece, img);
    }
    doc.save();
    doc.rect(winX, winY, mm(t.w), mm(t.h)).clip();
    doc.image(img, ox, oy, { width: mm(art.box.w), height: mm(art.box.h) });
    // Cut line: white under black so it shows on any colour.
    const toPt = ([u, v]: [number, number]): [number, number] => [ox + mm(u - art.box.x), oy + mm(v - art.box.y)];
    doc.lineJoin('round');
    doc.lineWidth(1.6);
    cutPath(doc, art.outlines, toPt);
    doc.stroke('#ffffff');
    doc.lineWidth(0.6);
    cutPath(doc, art.outlines, toPt);
    doc.stroke('#000000');
    doc.restore();
    // Registration crosses on the seams, outside the artwork, numbered so matching pairs are clear.
    let seam = 0;
    for (let c = 1; c < t.cols; c++) {
      seam++;
      const sx = (tilesPerArt[t.piece].find((q) => q.col === c)?.x ?? 0) + OVERLAP / 2;
      if (sx >= t.x && sx <= t.x + t.w) {
        for (const yy of [-MARK_ROOM / 2, art.box.h + MARK_ROOM / 2]) {
          if (yy < 0 ? t.row === 0 : t.row === t.rows - 1) {
            cross(doc, ox + mm(sx), oy + mm(yy));
            doc.font('Helvetica').fontSize(6).fillColor('#000000').text(String(seam), ox + mm(sx) + mm(3), oy + mm(yy) - mm(3.5), { lineBreak: false });
          }
        }
      }
    }
    for (let rr = 1; rr < t.rows; rr++) {
      seam++;
      const sy = (tilesPerArt[t.piece].find((q) => q.row === rr)?.y ?? 0) + OVERLAP / 2;
      if (sy >= t.y && sy <= t.y + t.h) {
        for (const xx of [-MARK_ROOM / 2, art.box.w + MARK_ROOM / 2]) {
          if (xx < 0 ? t.col === 0 : t.col === t.cols - 1) {
            cross(doc, ox + mm(xx), oy + mm(sy));
            doc.font('Helvetica').fontSize(6).fillColor('#000000').text(String(seam), ox + mm(xx) - mm(1), oy + mm(sy) + mm(3), { lineBreak: false });
          }
        }
      }
    }
    // Corner ticks of the tile window (where to trim the overlap, if you want).
    doc.lineWidth(0.3);
    for (const [qx, qy] of [[winX, winY], [winX + mm(t.w), winY], [winX, winY + mm(t.h)], [winX + mm(t.w), winY + mm(t.h)]]) {
      doc.moveTo(qx - 4, qy).lineTo(qx + 4, qy).moveTo(qx, qy - 4).lineTo(qx, qy + 4).stroke('#888888');
    }
    const tileText = t.rows * t.cols > 1 ? ` - tile row ${t.row + 1}/${t.rows}, column ${t.col + 1}/${t.cols}` : '';
    const what = art.kind === 'sign' ? (r.mode === 'sign' ? 'printed adversarial sign' : 'whole sign with stickers (desk demo)') : `sticker ${art.label}`;
    doc.font('Helvetica-Bold').fontSize(8).fillColor('#000000').text(`${art.label}: ${what}${tileText}`, winX, t.rows * t.cols > 1 ? cy + mm(1) : winY - mm(5), { lineBreak: false });
    pieceInfo[t.piece].pages.push(pageNo);
    cx += wPt + mm(GAP);
    shelf = Math.max(shelf, hPt);
  }
  pieceInfo.forEach((p) => { p.pages = [...new Set(p.pages)]; });
  doc.end();
  return { pdf: await done, stickerPng, stickerPngDpi, signPng, signPngDpi, pieces: pieceInfo, pageCount: pageNo };
}
