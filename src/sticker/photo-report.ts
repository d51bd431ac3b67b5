/**
 * The HTML report of a `sticker --photos` run: held-out real-photo success against sticker area
 * (sticker, random noise, uniform patch; SVG), per-condition success, and example held-out photos
 * as the model saw them (clean | sticker | noise) with its predictions. Self-contained (images
 * inline as data URIs).
 */
import sharp from 'sharp';
import type { Classifier } from '../inference/model';
import { CLASS_NAMES } from '../data/classes';
import type { EotConfig } from './eot';
import { everyPhotoViews, photoEotConfig, PhotoScene, renderPhotoViews } from './photos';
import { controlFills, HeldOutPhotoReport, heldOutPhotoSeed, PhotoAttack } from './photo-measure';
import { scoreImages } from './measure';
import { escapeXml as esc, lineChartSvg } from '../util/svg-chart';

export interface AreaPoint {
  /** Requested share of the sign and the share the mask really covers. */
  area: number;
  measuredArea: number;
  sticker: number;
  noise: number;
  uniform: number;
  stickerUntargeted: number;
  noiseUntargeted: number;
  uniformUntargeted: number;
}

export function areaPoint(area: number, measuredArea: number, r: HeldOutPhotoReport): AreaPoint {
  return {
    area,
    measuredArea,
    sticker: r.sticker.successRate,
    noise: r.noise.successRate,
    uniform: r.uniform.successRate,
    stickerUntargeted: r.sticker.untargetedRate,
    noiseUntargeted: r.noise.untargetedRate,
    uniformUntargeted: r.uniform.untargetedRate,
  };
}

export interface Example {
  file: string;
  /** PNG data URIs and predicted class per column. */
  cells: { label: string; uri: string; pred: number }[];
}

async function pngUri(rgb: Float32Array, S: number, scale: number): Promise<string> {
  const bytes = Buffer.alloc(S * S * 3);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.max(0, Math.min(255, Math.round(rgb[i] * 255)));
  const png = await sharp(bytes, { raw: { width: S, height: S, channels: 3 } })
    .resize(S * scale, S * scale, { kernel: 'nearest' })
    .png()
    .toBuffer();
  return `data:image/png;base64,${png.toString('base64')}`;
}

/** The first held-out view of up to `count` photos (spread over the set), clean, with the sticker, with noise. */
export async function examples(clf: Classifier, a: PhotoAttack, scenes: PhotoScene[], seed: number, eot?: EotConfig, count = 6): Promise<Example[]> {
  const S = clf.inputSize;
  const config = { ...(eot ?? photoEotConfig(S)), outputSize: S };
  const pick = Array.from(
    new Set(Array.from({ length: Math.min(count, scenes.length) }, (_, i) => Math.floor(((i + 0.5) * scenes.length) / Math.min(count, scenes.length)))),
  );
  const chosen = pick.map((i) => scenes[i]);
  // Same views as the measurement's first view of each photo would be only for index 0; these are for looking at.
  const views = everyPhotoViews(1, heldOutPhotoSeed(seed), chosen.length, config);
  const { noise } = controlFills(a, seed);
  const fills: [string, Float32Array, Float32Array][] = [
    ['clean', a.sticker, new Float32Array(a.printed.length)],
    ['sticker', a.sticker, a.printed],
    ['noise', noise, a.printed],
  ];
  const out: Example[] = chosen.map((s) => ({ file: s.file, cells: [] }));
  for (const [label, ink, cov] of fills) {
    const imgs = await renderPhotoViews(ink, cov, chosen, views, config);
    const { pred } = await scoreImages(clf, imgs, chosen.length, a.classId, a.target);
    for (let i = 0; i < chosen.length; i++)
      out[i].cells.push({ label, uri: await pngUri(imgs.subarray(i * S * S * 3, (i + 1) * S * S * 3), S, 4), pred: pred[i] });
  }
  return out;
}

const pct = (v: number) => `${(v * 100).toFixed(1)} %`;

/** Success against area as an SVG line chart (x: area 0–max, y: 0–100 %). */
export function areaSvg(points: AreaPoint[]): string {
  const series: [keyof AreaPoint, string, string][] = [
    ['sticker', 'sticker', '#c0392b'],
    ['noise', 'random noise', '#2c3e50'],
    ['uniform', 'uniform patch', '#7f8c8d'],
  ];
  const pct = (v: number) => `${(v * 100).toFixed(0)}%`;
  return lineChartSvg({
    title: 'success against sticker area',
    width: 520,
    height: 300,
    xLabel: "share of the sign's area",
    xMax: Math.max(0.25, ...points.map((p) => p.measuredArea)) * 1.05,
    xTicks: points.map((p) => ({ x: p.measuredArea, label: pct(p.measuredArea) })),
    series: series.map(([k, name, colour]) => ({
      name,
      colour,
      points: points.map((p) => ({ x: p.measuredArea, y: p[k] as number, tip: `${name} at ${pct(p.measuredArea)} of the sign: ${pct(p[k] as number)}` })),
    })),
  });
}

export interface ReportInput {
  title: string;
  targeted: boolean;
  main: HeldOutPhotoReport;
  area: number;
  points: AreaPoint[];
  examples: Example[];
  notes: string[];
}

/** The whole report page. */
export function reportHtml(r: ReportInput): string {
  const rows = r.points
    .map(
      (p) =>
        `<tr><td>${pct(p.measuredArea)}</td><td>${pct(p.sticker)}</td><td>${pct(p.noise)}</td><td>${pct(p.uniform)}</td>` +
        (r.targeted ? `<td>${pct(p.stickerUntargeted)}</td><td>${pct(p.noiseUntargeted)}</td><td>${pct(p.uniformUntargeted)}</td>` : '') +
        '</tr>',
    )
    .join('');
  const cond = (name: string, bins: HeldOutPhotoReport['byCondition']['sizePx'], digits: number) =>
    `<tr><th>${name}</th>${bins.map((b) => `<td>${b.from.toFixed(digits)}–${b.to.toFixed(digits)}: ${pct(b.success)} <small>(clean ${pct(b.cleanAccuracy)}, ${b.photos} photos)</small></td>`).join('')}</tr>`;
  const ex = r.examples
    .map(
      (e) =>
        `<tr><td><small>${esc(e.file.split(/[\\/]/).slice(-2).join('/'))}</small></td>${e.cells.map((c) => `<td><img src="${c.uri}" alt="${c.label}"><br><small>${c.label}: ${c.pred} ${esc(CLASS_NAMES[c.pred] ?? '')}</small></td>`).join('')}</tr>`,
    )
    .join('');
  return `<!doctype html><html><head><meta charset="utf-8"><title>${esc(r.title)}</title>
<style>body{font-family:sans-serif;max-width:900px;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}img{image-rendering:pixelated}</style></head><body>
<h1>${esc(r.title)}</h1>
<p>Held-out real photos (tracks never optimised on): ${r.main.photos} photos × ${r.main.viewsPerPhoto} views. Success is ${r.targeted ? 'targeted (classified as the target)' : 'untargeted (not classified as the sign)'}; the controls fill the same area with random noise and with the sticker's mean colour.</p>
<p>Main sticker, ${pct(r.area)} of the sign: <b>${pct(r.main.sticker.successRate)}</b>; noise ${pct(r.main.noise.successRate)}; uniform ${pct(r.main.uniform.successRate)}; clean photos classified correctly ${pct(r.main.clean.accuracy)}.</p>
<h2>Success against area</h2>${areaSvg(r.points)}
<table><tr><th>area</th><th>sticker</th><th>noise</th><th>uniform</th>${r.targeted ? '<th>sticker (untargeted)</th><th>noise (untargeted)</th><th>uniform (untargeted)</th>' : ''}</tr>${rows}</table>
<h2>Where the main sticker fails</h2><table>${cond('sign size (px)', r.main.byCondition.sizePx, 0)}${cond('brightness', r.main.byCondition.brightness, 2)}${cond('sharpness', r.main.byCondition.sharpness, 3)}</table>
<h2>Examples (held-out, as the model sees them)</h2><table><tr><th>photo</th><th>clean</th><th>sticker</th><th>noise</th></tr>${ex}</table>
${r.notes.map((n) => `<p><small>${esc(n)}</small></p>`).join('')}
</body></html>
`;
}
