/**
 * A self-contained HTML report of an evaluation: no scripts, no CDN. Plots are inline SVG drawn
 * here (accuracy vs eps, one chart per norm since an L2 eps and an L∞ eps are not comparable),
 * example images are inline PNG data URIs encoded with sharp.
 */
import sharp from 'sharp';
import { CLASS_NAMES } from '../data/classes';
import type { Norm } from './types';
import { escapeXml as esc, lineChartSvg } from '../util/svg-chart';
import type { AdversarialExample, RobustnessResult, RobustnessRow } from './evaluate';

export interface ReportMeta {
  model: string;
  data: string;
  split?: string;
  backend?: string;
  title?: string;
  /** Shown as the generation time; defaults to now. */
  generated?: string;
  /** Class names by id; defaults to the GTSRB names when the model has 43 classes. */
  classNames?: readonly string[];
}

/**
 * eps as 8/255 when a whole number of grey levels, otherwise 3 significant digits. L2 radii are
 * always decimal; L0 rows (JSMA) carry the sweep's L∞ values, so they print like L∞.
 */
export function formatEps(eps: number, norm: Norm = 'linf'): string {
  const g = eps * 255;
  if (norm !== 'l2' && eps > 0 && Math.abs(g - Math.round(g)) < 1e-4) return `${Math.round(g)}/255`;
  return eps === 0 ? '0' : Number(eps.toPrecision(3)).toString();
}

const pct = (v: number | null) => (v == null || Number.isNaN(v) ? '–' : `${(100 * v).toFixed(1)}%`);
const num = (v: number | null, d = 3) => (v == null || Number.isNaN(v) ? '–' : v.toFixed(d));

async function pngDataUri(rgb: Float32Array, size: number): Promise<string> {
  const bytes = Buffer.alloc(rgb.length);
  for (let i = 0; i < rgb.length; i++) bytes[i] = Math.round(Math.min(1, Math.max(0, rgb[i])) * 255);
  const png = await sharp(bytes, { raw: { width: size, height: size, channels: 3 } })
    .png()
    .toBuffer();
  return `data:image/png;base64,${png.toString('base64')}`;
}

/** adv − clean mapped to grey ± half range, scaled so the largest change is fully visible. */
function amplified(ex: AdversarialExample): { rgb: Float32Array; gain: number } {
  let m = 0;
  for (let i = 0; i < ex.clean.length; i++) m = Math.max(m, Math.abs(ex.adversarial[i] - ex.clean[i]));
  const gain = m > 0 ? 0.5 / m : 0;
  const rgb = new Float32Array(ex.clean.length);
  for (let i = 0; i < rgb.length; i++) rgb[i] = 0.5 + (ex.adversarial[i] - ex.clean[i]) * gain;
  return { rgb, gain };
}

const NORM_LABEL: Record<Norm, string> = { linf: 'L∞', l2: 'L2', l0: 'L0' };

/** Accuracy vs eps, one polyline per attack, clean accuracy as a dashed line. */
export function accuracyPlotSvg(rows: RobustnessRow[], cleanAccuracy: number, title: string, norm: Norm = 'linf'): string {
  const attacks = [...new Set(rows.map((r) => r.attack))];
  return lineChartSvg({
    title,
    heading: true,
    width: 560,
    height: 340,
    xLabel: 'ε',
    yLabel: 'accuracy',
    xTicks: [...new Set(rows.map((r) => r.eps))].sort((a, b) => a - b).map((e) => ({ x: e, label: formatEps(e, norm) })),
    series: attacks.map((name) => ({
      name,
      points: rows.filter((r) => r.attack === name).map((r) => ({ x: r.eps, y: r.accuracy, tip: `${name} ε=${formatEps(r.eps, norm)}: ${pct(r.accuracy)}` })),
    })),
    reference: { name: 'clean', y: cleanAccuracy },
  });
}

export async function renderReportHtml(result: RobustnessResult, meta: ReportMeta): Promise<string> {
  const names = meta.classNames ?? (result.numClasses === CLASS_NAMES.length ? CLASS_NAMES : []);
  const cls = (c: number) => (names[c] ? `${c} ${names[c]}` : `class ${c}`);
  const title = meta.title ?? `Robustness report: ${meta.model}`;
  const out: string[] = [];
  out.push(`<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title><style>
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px}
th{background:#f3f3f3}td.l,th.l{text-align:left}.wrap{overflow-x:auto}
.ex{display:inline-block;border:1px solid #ddd;margin:6px;padding:6px;font-size:12px;vertical-align:top;width:330px}
.ex img{width:96px;height:96px;image-rendering:pixelated;margin-right:4px}.ok{color:#b00}.no{color:#070}
.plots svg{margin:0 12px 12px 0}</style></head><body>`);
  out.push(`<h1>${esc(title)}</h1>`);
  out.push(
    `<p>Model <b>${esc(meta.model)}</b> · data <b>${esc(meta.data)}</b>${meta.split ? ` (${esc(meta.split)})` : ''}` +
      `${meta.backend ? ` · backend <b>${esc(meta.backend)}</b>` : ''} · ${result.n} images · clean accuracy <b>${pct(result.clean.accuracy)}</b>` +
      ` · generated ${esc(meta.generated ?? new Date().toISOString())}</p>`,
  );

  out.push('<h2>Accuracy under attack</h2><div class="plots">');
  for (const norm of ['linf', 'l2', 'l0'] as const) {
    const rows = result.results.filter((r) => r.norm === norm);
    if (rows.length) out.push(accuracyPlotSvg(rows, result.clean.accuracy, `${NORM_LABEL[norm]} attacks`, norm));
  }
  out.push('</div>');
  out.push(
    "<p>Minimal-perturbation attacks (DeepFool, C&amp;W, L-BFGS, fooling images) count an example at ε only when its perturbation, in the attack's norm, is at most ε. JSMA (L0) uses its own pixel budget at every ε &gt; 0.</p>",
  );

  out.push(
    '<h2>Results</h2><div class="wrap"><table><tr><th class="l">attack</th><th>norm</th><th>ε</th><th>accuracy</th><th>success rate</th>' +
      '<th>mean L0 (pixels)</th><th>mean L2</th><th>mean L∞</th><th>images/s</th></tr>',
  );
  for (const r of result.results) {
    out.push(
      `<tr><td class="l" title="${esc(r.title)}">${esc(r.attack)}</td><td>${NORM_LABEL[r.norm]}</td><td>${esc(formatEps(r.eps, r.norm))}</td>` +
        `<td>${pct(r.accuracy)}</td><td>${pct(r.successRate)}</td><td>${num(r.meanL0, 1)}</td><td>${num(r.meanL2)}</td>` +
        `<td>${num(r.meanLinf)}</td><td>${num(r.imagesPerSecond, 1)}</td></tr>`,
    );
  }
  out.push('</table></div>');

  if (result.examples.length) {
    out.push('<h2>Examples</h2><p>Each: clean | perturbation (amplified, grey = no change) | adversarial. Red: the attack succeeded.</p><div>');
    for (const ex of result.examples) {
      const amp = amplified(ex);
      const [a, b, c] = await Promise.all([pngDataUri(ex.clean, ex.size), pngDataUri(amp.rgb, ex.size), pngDataUri(ex.adversarial, ex.size)]);
      out.push(
        `<div class="ex"><div><b>${esc(ex.attack)}</b> ε=${esc(formatEps(ex.eps, result.results.find((r) => r.attack === ex.attack)?.norm))} · image #${ex.index}</div>` +
          `<img src="${a}" alt="clean"><img src="${b}" alt="perturbation"><img src="${c}" alt="adversarial">` +
          `<div>true: ${esc(cls(ex.label))}</div>` +
          `<div>clean: ${esc(cls(ex.cleanPrediction))} (${pct(ex.cleanConfidence)})</div>` +
          `<div class="${ex.success ? 'ok' : 'no'}">adversarial: ${esc(cls(ex.adversarialPrediction))} (${pct(ex.adversarialConfidence)})</div>` +
          `<div>perturbation ×${amp.gain > 0 ? amp.gain.toFixed(1) : '0'}</div></div>`,
      );
    }
    out.push('</div>');
  }

  // Per-class accuracy: clean, then each attack at its largest eps (every eps is in the JSON).
  const cols: RobustnessRow[] = [];
  for (const name of [...new Set(result.results.map((r) => r.attack))]) {
    const rows = result.results.filter((r) => r.attack === name);
    cols.push(rows.reduce((a, b) => (b.eps > a.eps ? b : a)));
  }
  out.push('<h2>Per-class accuracy</h2><div class="wrap"><table><tr><th class="l">class</th><th>clean</th>');
  for (const c of cols) out.push(`<th>${esc(c.attack)} ε=${esc(formatEps(c.eps, c.norm))}</th>`);
  out.push('</tr>');
  result.clean.perClassAccuracy.forEach((acc, c) => {
    if (acc == null) return;
    out.push(`<tr><td class="l">${esc(cls(c))}</td><td>${pct(acc)}</td>${cols.map((r) => `<td>${pct(r.perClassAccuracy[c])}</td>`).join('')}</tr>`);
  });
  out.push('</table></div></body></html>');
  return out.join('\n');
}
