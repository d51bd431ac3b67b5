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
 * Artwork (pdf-artwork.ts) is sampled from the optimised sticker (bilinear, as the EOT warp sees it) and from a
 * crisp high-resolution rendering of the clean sign; colours extend 2 mm past the cut line
 * (bleed) so an imprecise cut leaves no white rim.
 */
import { CLASS_NAMES } from '../data/classes';
import { UserError } from '../data/types';
import type { StickerResult } from './optimize';
import { Component, components } from './masks';
import { buildArtwork, mm, png, previewPng, raster } from './pdf-artwork';
import { DEFAULT_PALETTE, Palette } from './palette';
import { stripLayout } from './calibration-strip';

/** Points per millimetre: 1 in = 72 pt = 25.4 mm. */
export { MM } from './pdf-artwork';
export const A4_MM = { width: 210, height: 297 } as const;
/** Page layout, mm. */
const MARGIN = 10,
  HEADER = 14,
  FOOTER = 24,
  MARK_ROOM = 9,
  LABEL_ROOM = 7,
  GAP = 6,
  OVERLAP = 12;

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

// pdfkit is loaded on first use; its types are @types/pdfkit's, which lack openImage (pdfkit's
// own: an image embedded once and placed on several tiles).
declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace -- augments @types/pdfkit's global namespace
  namespace PDFKit.Mixins {
    interface OpenedImage {
      width: number;
      height: number;
    }
    interface PDFImage {
      openImage(src: Buffer): OpenedImage;
      image(src: OpenedImage, x: number, y: number, options?: ImageOption): this;
    }
  }
}
type PdfDoc = PDFKit.PDFDocument;
type PdfImage = PDFKit.Mixins.OpenedImage;

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
export function tileRects(
  w: number,
  h: number,
  maxW: number,
  maxH: number,
  overlap = OVERLAP,
): { x: number; y: number; w: number; h: number; row: number; col: number; rows: number; cols: number }[] {
  const split = (len: number, max: number): [number, number][] => {
    if (len <= max) return [[0, len]];
    const n = Math.ceil((len - overlap) / (max - overlap));
    const step = (len - overlap) / n;
    return Array.from({ length: n }, (_, i): [number, number] => [i * step, i * step + step + overlap]);
  };
  const xs = split(w, maxW),
    ys = split(h, maxH);
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
    doc
      .lineWidth(0.25)
      .moveTo(x + mm(i), y + mm(3))
      .lineTo(x + mm(i), y + mm(3 + len))
      .stroke('#000000');
  }
  doc.font('Helvetica').fontSize(6.5).fillColor('#000000');
  for (let i = 0; i <= 100; i += 10) doc.text(String(i), x + mm(i) - 8, y + mm(5.4), { width: 16, align: 'center', lineBreak: false });
  doc
    .fontSize(7)
    .text('100 mm scale bar: if it does not measure exactly 100 mm, reprint at 100 % ("actual size").', x + mm(104), y - 1, { width: mm(82), lineBreak: true });
}

function cross(doc: PdfDoc, x: number, y: number): void {
  const r = mm(2.5),
    l = mm(4.5);
  doc.lineWidth(0.4);
  doc.circle(x, y, r).stroke('#000000');
  doc
    .moveTo(x - l, y)
    .lineTo(x + l, y)
    .moveTo(x, y - l)
    .lineTo(x, y + l)
    .stroke('#000000');
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
  interface Art {
    label: string;
    kind: 'sticker' | 'sign';
    box: { x: number; y: number; w: number; h: number };
    outlines: [number, number][][];
    rasterKind: 'piece' | 'sign';
  }
  const arts: Art[] = comps.map((c, i) => ({
    label: r.mode === 'sign' ? 'S' : String.fromCharCode(65 + (i % 26)) + (i >= 26 ? String(Math.floor(i / 26)) : ''),
    kind: r.mode === 'sign' ? ('sign' as const) : ('sticker' as const),
    box: { x: c.bbox.x * signMm - bleed, y: c.bbox.y * signMm - bleed, w: c.bbox.w * signMm + 2 * bleed, h: c.bbox.h * signMm + 2 * bleed },
    outlines: c.outlines.map((l) => l.map(([x, y]): [number, number] => [x * signMm, y * signMm])),
    rasterKind: 'piece' as const,
  }));
  if (includeFull) {
    const signComps = components(a.alphaHi, a.Rc, minPx);
    arts.push({
      label: 'S',
      kind: 'sign',
      box: { x: -bleed, y: -bleed, w: signMm + 2 * bleed, h: signMm + 2 * bleed },
      outlines: signComps.flatMap((c) => c.outlines.map((l) => l.map(([x, y]): [number, number] => [x * signMm, y * signMm]))),
      rasterKind: 'sign',
    });
  }

  // PNG files at print resolution.
  const embedMax = o.embedMaxPx ?? 3000;
  let stickerPng: Buffer | null = null,
    stickerPngDpi: number | null = null;
  if (r.mode === 'sticker') {
    const x0 = Math.min(...arts.filter((t) => t.kind === 'sticker').map((t) => t.box.x)),
      y0 = Math.min(...arts.filter((t) => t.kind === 'sticker').map((t) => t.box.y));
    const x1 = Math.max(...arts.filter((t) => t.kind === 'sticker').map((t) => t.box.x + t.box.w)),
      y1 = Math.max(...arts.filter((t) => t.kind === 'sticker').map((t) => t.box.y + t.box.h));
    stickerPngDpi = Math.min(dpi, (8192 / Math.max(x1 - x0, y1 - y0)) * 25.4);
    stickerPng = await png(raster(a, { x: x0, y: y0, w: x1 - x0, h: y1 - y0 }, stickerPngDpi, 'piece', 0, true), 4, stickerPngDpi);
  }
  const signPngDpi = Math.min(dpi, ((o.signPngMaxPx ?? 4096) / signMm) * 25.4);
  const signPng = await png(raster(a, { x: 0, y: 0, w: signMm, h: signMm }, signPngDpi, 'sign', 0, true), 4, signPngDpi);

  // The document.
  const PDFDocument = require('pdfkit') as typeof import('pdfkit');
  const target = r.target;
  const title = r.mode === 'sticker' ? 'Adversarial sticker' : 'Printed adversarial sign';
  const doc = new PDFDocument({
    size: 'A4',
    margin: 0,
    autoFirstPage: true,
    compress: o.compress ?? true,
    info: { Title: `advsign ${title.toLowerCase()}: ${className(r.classId)} -> ${className(target)}`, Creator: 'advsign', Subject: `sign ${signMm} mm` },
  });
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('data', (c) => chunks.push(c));
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });
  const pageW = mm(A4_MM.width),
    pageH = mm(A4_MM.height);
  let pageNo = 1;
  const footer = (label: string) => {
    scaleBar(doc, mm(MARGIN), pageH - mm(FOOTER) + mm(6));
    doc
      .font('Helvetica')
      .fontSize(7)
      .fillColor('#555555')
      .text(`${label}   page ${pageNo}   advsign - for research and teaching only; never place on a public road.`, mm(MARGIN), pageH - mm(8), {
        width: pageW - mm(2 * MARGIN),
        lineBreak: false,
      });
  };

  // Page 1: overview.
  const x0 = mm(MARGIN);
  doc
    .font('Helvetica-Bold')
    .fontSize(15)
    .fillColor('#000000')
    .text(`${title}: ${className(r.classId)} -> ${className(target)}`, x0, mm(MARGIN), { width: pageW - 2 * x0 });
  let y = mm(MARGIN + 9);
  const prevMm = 62;
  const preview = (kind: 'clean' | 'adv'): Promise<Buffer> => previewPng(a, kind);
  doc.image(await preview('clean'), x0, y + mm(5), { width: mm(prevMm), height: mm(prevMm) });
  doc.image(await preview('adv'), x0 + mm(prevMm + 8), y + mm(5), { width: mm(prevMm), height: mm(prevMm) });
  doc.font('Helvetica').fontSize(8).fillColor('#000000');
  doc.text('clean sign (preview, not to scale)', x0, y, { width: mm(prevMm), align: 'center', lineBreak: false });
  doc.text('with the attack (preview, not to scale)', x0 + mm(prevMm + 8), y, { width: mm(prevMm), align: 'center', lineBreak: false });
  // Piece outlines and labels on the adversarial preview.
  const px0 = x0 + mm(prevMm + 8),
    py0 = y + mm(5),
    k = mm(prevMm) / signMm;
  for (const t of arts.filter((q) => q.kind === 'sticker')) {
    doc.lineWidth(0.6);
    cutPath(doc, t.outlines, ([u, v]) => [px0 + u * k, py0 + v * k]);
    doc.stroke('#000000');
    doc.font('Helvetica-Bold').fontSize(9).fillColor('#000000');
    const lx = px0 + (t.box.x + t.box.w) * k + 2,
      ly = py0 + (t.box.y + t.box.h / 2) * k - 4;
    doc.rect(lx - 1, ly - 1, 10, 11).fill('#ffffff');
    doc.fillColor('#000000').text(t.label, lx, ly, { width: 8, lineBreak: false });
  }
  // Right column: facts.
  const colX = x0 + mm(2 * prevMm + 14),
    colW = pageW - colX - x0;
  doc.font('Helvetica').fontSize(7.5).fillColor('#000000');
  const facts = [
    `Sign: ${signMm} mm across its bounding square (${className(r.classId)}).`,
    r.mode === 'sticker'
      ? `Mask: ${r.maskDescription}; ${(r.areaFraction * 100).toFixed(1)} % of the sign.`
      : `Whole-sign perturbation, L-inf eps = ${((r.eps ?? 0) * 255).toFixed(1)}/255.`,
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
    label: t.label,
    kind: t.kind,
    xMm: t.box.x + bleed,
    yMm: t.box.y + bleed,
    widthMm: t.box.w - 2 * bleed,
    heightMm: t.box.h - 2 * bleed,
    tiles: 0,
    pages: [],
  }));
  const tilesPerArt = arts.map((t) =>
    tileRects(t.box.w, t.box.h, A4_MM.width - 2 * MARGIN - 2 * MARK_ROOM, A4_MM.height - HEADER - FOOTER - 2 * MARK_ROOM - LABEL_ROOM - MARGIN),
  );
  pieceInfo.forEach((p, i) => {
    p.tiles = tilesPerArt[i].length;
  });
  for (const p of pieceInfo) {
    const where =
      p.kind === 'sign'
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
    "Measure the offsets above from the top-left corner of the sign's bounding square: as wide as the sign and centred on it (for round and octagonal signs its top and left sides touch the sign).",
    'Calibrate: photograph the colour strip below (all four corner marks, flat, in the light you will test in), run advsign calibrate --photo strip.jpg --out palette.csv, and pass the result with --palette.',
  ];
  doc.font('Helvetica').fontSize(8);
  steps.forEach((s, i) => {
    doc.text(`${i + 1}. ${s}`, x0 + mm(3), y, { width: pageW - 2 * x0 - mm(3) });
    y += doc.heightOfString(`${i + 1}. ${s}`, { width: pageW - 2 * x0 - mm(3) }) + 2;
  });
  y += mm(3);
  // Calibration strip (layout shared with `advsign calibrate`): nothing printed in its quiet zone.
  doc
    .font('Helvetica-Bold')
    .fontSize(10)
    .fillColor('#000000')
    .text(`Calibration strip: the ${palette.colors.length} palette colours (${palette.source}), in reading order`, x0, y);
  y += mm(5.5);
  const strip = stripLayout(palette.colors.length);
  const sx = x0 + (pageW - 2 * x0 - mm(strip.width)) / 2,
    sy = y + mm(strip.quietZone);
  for (const [mx, my] of strip.marks) {
    const m = strip.mark;
    doc.rect(sx + mm(mx - m.outer / 2), sy + mm(my - m.outer / 2), mm(m.outer), mm(m.outer)).fill('#000000');
    doc.rect(sx + mm(mx - m.inner / 2), sy + mm(my - m.inner / 2), mm(m.inner), mm(m.inner)).fill('#ffffff');
    doc.rect(sx + mm(mx - m.dot / 2), sy + mm(my - m.dot / 2), mm(m.dot), mm(m.dot)).fill('#000000');
  }
  palette.colors.forEach((c, i) => {
    const p = strip.patches[i];
    doc.rect(sx + mm(p.x), sy + mm(p.y), mm(p.size), mm(p.size)).fill(
      '#' +
        c
          .map((v) =>
            Math.round(v * 255)
              .toString(16)
              .padStart(2, '0'),
          )
          .join(''),
    );
  });
  footer('overview');

  // Piece pages: shelf-pack the tiles onto A4 pages.
  const areaX = mm(MARGIN),
    areaY = mm(HEADER),
    areaW = pageW - 2 * areaX,
    areaBottom = pageH - mm(FOOTER);
  const tiles: Tile[] = arts.flatMap((_, i) => tilesPerArt[i].map((t) => ({ piece: i, ...t })));
  const images = new Map<number, PdfImage>();
  const embedDpi = (t: Art) => Math.min(dpi, (embedMax / Math.max(t.box.w, t.box.h)) * 25.4);
  let cx = areaX,
    cy = areaY,
    shelf = 0;
  let started = false;
  const newPage = () => {
    doc.addPage({ size: 'A4', margin: 0 });
    pageNo++;
    doc
      .font('Helvetica-Bold')
      .fontSize(10)
      .fillColor('#000000')
      .text(`${title} - pieces at real size (sign ${signMm} mm)`, mm(MARGIN), mm(MARGIN - 3), { lineBreak: false });
    footer('pieces');
    cx = areaX;
    cy = areaY;
    shelf = 0;
    started = true;
  };
  for (const t of tiles) {
    const art = arts[t.piece];
    const wPt = mm(t.w + 2 * MARK_ROOM),
      hPt = mm(t.h + 2 * MARK_ROOM + LABEL_ROOM);
    if (!started) newPage();
    if (cx + wPt > areaX + areaW + 0.01) {
      cx = areaX;
      cy += shelf + mm(GAP);
      shelf = 0;
    }
    if (cy + hPt > areaBottom + 0.01) newPage();
    // Artwork origin on the page: the piece box's top-left, shifted so this tile's window lands here.
    const winX = cx + mm(MARK_ROOM),
      winY = cy + mm(LABEL_ROOM + MARK_ROOM);
    const ox = winX - mm(t.x),
      oy = winY - mm(t.y);
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
            doc
              .font('Helvetica')
              .fontSize(6)
              .fillColor('#000000')
              .text(String(seam), ox + mm(sx) + mm(3), oy + mm(yy) - mm(3.5), { lineBreak: false });
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
            doc
              .font('Helvetica')
              .fontSize(6)
              .fillColor('#000000')
              .text(String(seam), ox + mm(xx) - mm(1), oy + mm(sy) + mm(3), { lineBreak: false });
          }
        }
      }
    }
    // Corner ticks of the tile window (where to trim the overlap, if you want).
    doc.lineWidth(0.3);
    for (const [qx, qy] of [
      [winX, winY],
      [winX + mm(t.w), winY],
      [winX, winY + mm(t.h)],
      [winX + mm(t.w), winY + mm(t.h)],
    ]) {
      doc
        .moveTo(qx - 4, qy)
        .lineTo(qx + 4, qy)
        .moveTo(qx, qy - 4)
        .lineTo(qx, qy + 4)
        .stroke('#888888');
    }
    const tileText = t.rows * t.cols > 1 ? ` - tile row ${t.row + 1}/${t.rows}, column ${t.col + 1}/${t.cols}` : '';
    const what = art.kind === 'sign' ? (r.mode === 'sign' ? 'printed adversarial sign' : 'whole sign with stickers (desk demo)') : `sticker ${art.label}`;
    doc
      .font('Helvetica-Bold')
      .fontSize(8)
      .fillColor('#000000')
      .text(`${art.label}: ${what}${tileText}`, winX, t.rows * t.cols > 1 ? cy + mm(1) : winY - mm(5), { lineBreak: false });
    pieceInfo[t.piece].pages.push(pageNo);
    cx += wPt + mm(GAP);
    shelf = Math.max(shelf, hPt);
  }
  pieceInfo.forEach((p) => {
    p.pages = [...new Set(p.pages)];
  });
  doc.end();
  return { pdf: await done, stickerPng, stickerPngDpi, signPng, signPngDpi, pieces: pieceInfo, pageCount: pageNo };
}
