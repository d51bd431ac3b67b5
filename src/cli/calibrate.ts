/**
 * `advsign calibrate --photo strip.jpg --out palette.csv`: measures the printed calibration strip
 * in a photo and writes the palette `advsign sticker --palette` (and its NPS term) uses, plus a
 * per-patch table (intended vs printed, ΔE). Nothing is written when the strip is not found.
 */
import { loadImageFile } from '../data/image-io';
import { UserError } from '../data/types';
import { calibrateFromPhoto, Calibration } from '../sticker/calibrate';
import { DEFAULT_PALETTE, loadPalette } from '../sticker/palette';
import { checkOutputs, checkWritable, writeFilesAtomic } from '../util/atomic-file';
import { jsonTarget, parseFlags, str, writeJsonOutput } from './args';

export const CALIBRATE_HELP = `advsign calibrate --photo strip.jpg --out palette.csv [--palette FILE] [--json FILE|-]

Finds the colour calibration strip of a sticker PDF (page 1; its four corner marks) in a photo
taken in the light you will test in (perspective and uneven light are fine; the whole strip,
flat, in focus), measures every patch relative to the paper around it, and writes
palette.csv (the printed colours, r,g,b 0..255 per line: pass it to 'advsign sticker --palette')
and palette-patches.csv (per patch: intended and printed colour, ΔE CIE76).

  --photo FILE     the photo (JPEG, PNG…)
  --out FILE       the palette to write (.csv)
  --palette FILE   the palette the PDF was printed with (default: the built-in one)
  --json FILE|-    write the per-patch table as JSON to FILE; '-' or a bare --json: stdout only`;

export function patchesPath(out: string): string {
  return out.replace(/(\.csv)?$/i, '-patches.csv');
}

const byte = (v: number) => Math.round(v * 255);

function paletteCsv(c: Calibration, photo: string): string {
  return (
    `# printed colours measured by advsign calibrate from ${photo}, relative to paper white\nr,g,b\n` +
    c.patches.map((p) => p.printed.map(byte).join(',')).join('\n') +
    '\n'
  );
}

function patchesCsv(c: Calibration): string {
  return (
    'patch,intended_r,intended_g,intended_b,printed_r,printed_g,printed_b,delta_e\n' +
    c.patches.map((p) => [p.index, ...p.intended.map(byte), ...p.printed.map(byte), p.deltaE.toFixed(2)].join(',')).join('\n') +
    '\n'
  );
}

export async function calibrateCommand(argv: string[]): Promise<void> {
  const f = parseFlags(argv, { photo: { type: 'string' }, out: { type: 'string' }, palette: { type: 'string' }, json: { type: 'string' } }, 'calibrate');
  const photo = str(f, 'photo');
  if (!photo) throw new UserError(`calibrate: --photo is required (see 'advsign calibrate --help')`);
  const out = str(f, 'out');
  if (!out) throw new UserError(`calibrate: --out is required, e.g. --out palette.csv`);
  if (!/\.csv$/i.test(out)) throw new UserError(`--out must name a .csv file, got '${out}'`);
  const palette = f.palette !== undefined ? loadPalette(str(f, 'palette') as string) : DEFAULT_PALETTE;
  const table = patchesPath(out);
  for (const p of [out, table]) checkWritable(p);
  checkOutputs(jsonTarget(f));
  const c = calibrateFromPhoto(await loadImageFile(photo), palette.colors, photo);
  writeFilesAtomic([
    { path: out, data: paletteCsv(c, photo) },
    { path: table, data: patchesCsv(c) },
  ]);
  const json = jsonTarget(f);
  if (json)
    writeJsonOutput(json, {
      photo,
      palette: out,
      patchesFile: table,
      intendedPalette: palette.source,
      meanDeltaE: c.meanDeltaE,
      maxDeltaE: c.maxDeltaE,
      marks: c.marks,
      patches: c.patches,
    });
  if (json === '-') return;
  const worst = c.patches
    .slice()
    .sort((a, b) => b.deltaE - a.deltaE)
    .slice(0, 3);
  console.log(
    `calibration strip found: ${c.patches.length} patches, printed vs intended ΔE mean ${c.meanDeltaE.toFixed(1)}, max ${c.maxDeltaE.toFixed(1)} (largest: ${worst.map((p) => `#${p.index} ${p.deltaE.toFixed(1)}`).join(', ')})`,
  );
  console.log(`wrote ${out} (use: advsign sticker --palette ${out} ...) and ${table}`);
}
