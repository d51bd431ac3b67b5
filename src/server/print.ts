/**
 * The current adversarial sign as a PDF at an exact physical size, for printing and testing in
 * the physical world. The page is the sign plus margins; the sign is placed at exactly
 * size_mm × size_mm, with a 10 mm-graduated scale bar to check the printer did not rescale, and a
 * caption saying what it is. The 32×32 model input is upscaled with nearest neighbour first, so
 * no viewer or printer smooths the perturbation away.
 */
import sharp from 'sharp';
import type { FrameResult } from './pipeline';

export const MM_TO_PT = 72 / 25.4;
/** Margins around the sign, mm: sides/top, and the band below for the scale bar and caption. */
export const PRINT_MARGIN_MM = 12;
export const PRINT_FOOTER_MM = 34;

/** The page size (points) for a sign of `sizeMm`: what the PDF's MediaBox holds. */
export function printPageSize(sizeMm: number): { widthPt: number; heightPt: number; widthMm: number; heightMm: number } {
  // At least 100 mm wide so the scale bar and caption fit beside a small sign.
  const widthMm = Math.max(sizeMm + 2 * PRINT_MARGIN_MM, 100);
  const heightMm = sizeMm + PRINT_MARGIN_MM + PRINT_FOOTER_MM;
  return { widthPt: widthMm * MM_TO_PT, heightPt: heightMm * MM_TO_PT, widthMm, heightMm };
}

function pctText(p: number): string {
  return `${(p * 100).toFixed(0)} %`;
}

export async function adversarialPdf(r: FrameResult, sizeMm: number, opts: { caption?: boolean } = {}): Promise<Buffer> {
  const PDFDocument = require('pdfkit') as typeof import('pdfkit');
  const s = r.crops.size;
  const up = Math.max(1, Math.floor(512 / s));
  const bytes = Buffer.allocUnsafe(s * s * 3);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.max(0, Math.min(255, Math.round(r.crops.adversarial[i] * 255)));
  const png = await sharp(bytes, { raw: { width: s, height: s, channels: 3 } })
    .resize(s * up, s * up, { kernel: 'nearest' })
    .png()
    .toBuffer();

  const page = printPageSize(sizeMm);
  const mm = (v: number) => v * MM_TO_PT;
  const eps255 = (r.attack.eps * 255).toFixed((r.attack.eps * 255) % 1 === 0 ? 0 : 1);
  const doc = new PDFDocument({
    size: [page.widthPt, page.heightPt],
    margin: 0,
    autoFirstPage: true,
    info: { Title: `advsign adversarial sign ${sizeMm} mm`, Creator: 'advsign', Subject: `${r.attack.name} eps ${eps255}/255` },
  });
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('data', (c) => chunks.push(c));
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });

  const x0 = mm(PRINT_MARGIN_MM);
  const y0 = mm(PRINT_MARGIN_MM);
  doc.image(png, x0, y0, { width: mm(sizeMm), height: mm(sizeMm) });
  // Crop marks just outside the corners.
  doc.lineWidth(0.5);
  const m = mm(4);
  const g = mm(1.5);
  for (const [cx, cy, dx, dy] of [
    [x0, y0, -1, -1],
    [x0 + mm(sizeMm), y0, 1, -1],
    [x0, y0 + mm(sizeMm), -1, 1],
    [x0 + mm(sizeMm), y0 + mm(sizeMm), 1, 1],
  ]) {
    doc
      .moveTo(cx + dx * g, cy)
      .lineTo(cx + dx * (g + m), cy)
      .stroke('#000000');
    doc
      .moveTo(cx, cy + dy * g)
      .lineTo(cx, cy + dy * (g + m))
      .stroke('#000000');
  }
  // Scale bar: 50 mm (or 20 mm on small pages), black/white 10 mm blocks.
  const barMm = sizeMm >= 60 ? 50 : 20;
  const by = y0 + mm(sizeMm) + mm(7);
  for (let i = 0; i < barMm / 10; i++) {
    doc.rect(x0 + mm(i * 10), by, mm(10), mm(2.5)).fill(i % 2 ? '#ffffff' : '#000000');
  }
  doc.lineWidth(0.4).rect(x0, by, mm(barMm), mm(2.5)).stroke('#000000');
  doc.font('Helvetica').fontSize(7).fillColor('#000000');
  for (let i = 0; i <= barMm / 10; i++) doc.text(`${i * 10}`, x0 + mm(i * 10) - 6, by + mm(3.2), { width: 12, align: 'center', lineBreak: false });
  const textW = page.widthPt - 2 * x0;
  doc.text(`${barMm} mm scale bar: print at 100 % ("actual size"); the sign must measure ${sizeMm} mm.`, x0 + mm(barMm) + mm(4), by - 1, {
    width: textW - mm(barMm + 4),
    lineBreak: true,
  });
  if (opts.caption !== false) {
    // ASCII only: the built-in PDF fonts (no font files needed) have no Greek letters or arrows.
    const targeted = r.attack.targeted ? `, targeted at class ${r.attack.target}` : '';
    const lines = [
      `advsign - adversarial traffic sign: ${r.attack.name.toUpperCase()}${targeted}, eps = ${eps255}/255, model input ${s}x${s} px, printed ${sizeMm} x ${sizeMm} mm`,
      `clean: ${r.clean.name} (${pctText(r.clean.confidence)})  ->  adversarial: ${r.adversarial.name} (${pctText(r.adversarial.confidence)})${r.fooled ? '  [fooled]' : ''}`,
      `${new Date().toISOString().slice(0, 19).replace('T', ' ')} UTC. For teaching and research; never place on a public road.`,
    ];
    doc.fontSize(8);
    const widest = Math.max(...lines.map((l) => doc.widthOfString(l)));
    doc.fontSize(Math.max(4, Math.min(8, (8 * textW) / widest)));
    lines.forEach((l, i) => doc.text(l, x0, by + mm(8) + i * 11, { width: textW, lineBreak: false }));
  }
  doc.end();
  return done;
}
