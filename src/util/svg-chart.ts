/**
 * The one line chart every report draws (accuracy against ε, defenses against ε, sticker success
 * against area): y is a share in [0, 1] shown in %, x runs from 0 to the largest tick, one
 * polyline with dots per series and a legend on the right. Plain SVG text, no dependencies, so
 * the HTML reports stay single files.
 */

export const CHART_COLOURS = [
  '#1f77b4',
  '#d62728',
  '#2ca02c',
  '#ff7f0e',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
  '#393b79',
  '#ad494a',
  '#637939',
];

export interface ChartPoint {
  x: number;
  /** A share in [0, 1]; NaN or null points are left out. */
  y: number | null;
  /** Hover text of the dot. */
  tip?: string;
}

export interface ChartSeries {
  name: string;
  /** Default: the series' place in CHART_COLOURS. */
  colour?: string;
  points: ChartPoint[];
}

export interface LineChart {
  /** Accessible name, and the heading above the plot when `heading` is set. */
  title: string;
  heading?: boolean;
  width: number;
  height: number;
  xLabel: string;
  yLabel?: string;
  xTicks: { x: number; label: string }[];
  series: ChartSeries[];
  /** A dashed horizontal line with its own legend entry (e.g. clean accuracy). */
  reference?: { name: string; y: number };
  /** The right end of the x axis (default: the largest tick or point). */
  xMax?: number;
  /** Room on the right for the legend (default 150 px). */
  legendWidth?: number;
}

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

const shown = (p: ChartPoint): p is ChartPoint & { y: number } => p.y != null && Number.isFinite(p.y) && Number.isFinite(p.x);

export function lineChartSvg(c: LineChart): string {
  const L = 56,
    R = c.legendWidth ?? 150,
    T = c.heading ? 30 : 15,
    B = 46;
  const pw = c.width - L - R,
    ph = c.height - T - B;
  const maxX = c.xMax ?? Math.max(...c.xTicks.map((t) => t.x), ...c.series.flatMap((s) => s.points.map((p) => p.x)), 1e-9);
  const xs = (x: number) => (L + (x / maxX) * pw).toFixed(1);
  const ys = (y: number) => (T + (1 - y) * ph).toFixed(1);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${c.width}" height="${c.height}" viewBox="0 0 ${c.width} ${c.height}" font-family="sans-serif" role="img" aria-label="${escapeXml(c.title)}">`,
  ];
  if (c.heading) out.push(`<text x="${L + pw / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(c.title)}</text>`);
  for (let i = 0; i <= 4; i++) {
    const y = ys(i / 4);
    out.push(`<line x1="${L}" y1="${y}" x2="${L + pw}" y2="${y}" stroke="#ddd"/>`);
    out.push(`<text x="${L - 6}" y="${+y + 4}" text-anchor="end" font-size="11">${i * 25}%</text>`);
  }
  for (const t of c.xTicks) {
    const x = xs(t.x);
    out.push(`<line x1="${x}" y1="${T + ph}" x2="${x}" y2="${T + ph + 4}" stroke="#333"/>`);
    out.push(`<text x="${x}" y="${T + ph + 16}" text-anchor="middle" font-size="11">${escapeXml(t.label)}</text>`);
  }
  out.push(`<rect x="${L}" y="${T}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${L + pw / 2}" y="${c.height - 8}" text-anchor="middle" font-size="12">${escapeXml(c.xLabel)}</text>`);
  if (c.yLabel)
    out.push(`<text x="14" y="${T + ph / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 14 ${T + ph / 2})">${escapeXml(c.yLabel)}</text>`);
  const legend = (i: number, colour: string, name: string, dash = '') => {
    const ly = T + 10 + i * 18;
    out.push(`<line x1="${L + pw + 12}" y1="${ly}" x2="${L + pw + 32}" y2="${ly}" stroke="${colour}" stroke-width="2"${dash}/>`);
    out.push(`<text x="${L + pw + 38}" y="${ly + 4}" font-size="12">${escapeXml(name)}</text>`);
  };
  c.series.forEach((s, i) => {
    const colour = s.colour ?? CHART_COLOURS[i % CHART_COLOURS.length];
    const pts = s.points.filter(shown).sort((a, b) => a.x - b.x);
    out.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${pts.map((p) => `${xs(p.x)},${ys(p.y)}`).join(' ')}"/>`);
    for (const p of pts) {
      const tip = p.tip ? `<title>${escapeXml(p.tip)}</title>` : '';
      out.push(`<circle cx="${xs(p.x)}" cy="${ys(p.y)}" r="3" fill="${colour}">${tip}</circle>`);
    }
    legend(i, colour, s.name);
  });
  if (c.reference && Number.isFinite(c.reference.y)) {
    const y = ys(c.reference.y);
    out.push(`<line x1="${L}" y1="${y}" x2="${L + pw}" y2="${y}" stroke="#000" stroke-dasharray="5,4"/>`);
    legend(c.series.length, '#000', c.reference.name, ' stroke-dasharray="5,4"');
  }
  out.push('</svg>');
  return out.join('\n');
}
