/**
 * A PNG of the three panels as the page shows them (clean frame with its ROI, amplified
 * perturbation, adversarial input) with the top predictions written underneath.
 */
import { createCanvas, loadImage } from '@napi-rs/canvas';
import { ensureImages, FrameResult } from './pipeline';

const P = 360; // panel side, px

export async function snapshotPng(r: FrameResult): Promise<Buffer> {
  const W = 3 * P + 4 * 16;
  const H = P + 150;
  const canvas = createCanvas(W, H);
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, W, H);
  await ensureImages(r, ['frame', 'perturbation', 'adversarial']);
  const [frame, pert, adv] = await Promise.all([loadImage(r.images.frame!), loadImage(r.images.perturbation!), loadImage(r.images.adversarial!)]);
  const titles = ['Clean (camera)', `Perturbation ×${r.amplify.toFixed(0)}`, 'Adversarial'];
  const xs = [16, 32 + P, 48 + 2 * P];
  const top = 40;
  ctx.font = 'bold 22px "DejaVu Sans", "Liberation Sans", sans-serif';
  ctx.fillStyle = '#1b1f24';
  titles.forEach((t, i) => ctx.fillText(t, xs[i], 28));
  // Clean: the whole frame fitted into the panel, ROI outlined.
  const sc = Math.min(P / r.width, P / r.height);
  const fw = r.width * sc;
  const fh = r.height * sc;
  const fx = xs[0] + (P - fw) / 2;
  const fy = top + (P - fh) / 2;
  ctx.fillStyle = '#e9ecef';
  ctx.fillRect(xs[0], top, P, P);
  ctx.drawImage(frame, fx, fy, fw, fh);
  ctx.strokeStyle = '#ffd400';
  ctx.lineWidth = 3;
  ctx.strokeRect(fx + r.roi.x * sc, fy + r.roi.y * sc, r.roi.w * sc, r.roi.h * sc);
  // Model-sized panels: nearest-neighbour so each model pixel is a visible square.
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(pert, xs[1], top, P, P);
  ctx.drawImage(adv, xs[2], top, P, P);
  ctx.lineWidth = 6;
  ctx.strokeStyle = r.fooled ? '#d0021b' : '#1e8e3e';
  ctx.strokeRect(xs[2] + 3, top + 3, P - 6, P - 6);
  const pct = (p: number) => `${(p * 100).toFixed(1)} %`;
  ctx.fillStyle = '#1b1f24';
  ctx.font = '18px "DejaVu Sans", "Liberation Sans", sans-serif';
  ctx.fillText(`${r.clean.name} — ${pct(r.clean.confidence)}`, xs[0], top + P + 30, P);
  ctx.fillText(`${r.attack.name.toUpperCase()}  ε = ${(r.attack.eps * 255).toFixed(1)}/255`, xs[1], top + P + 30, P);
  ctx.fillStyle = r.fooled ? '#d0021b' : '#1e8e3e';
  ctx.fillText(`${r.adversarial.name} — ${pct(r.adversarial.confidence)}`, xs[2], top + P + 30, P);
  ctx.font = 'bold 26px "DejaVu Sans", "Liberation Sans", sans-serif';
  ctx.fillText(r.fooled ? 'FOOLED' : 'not fooled', xs[2], top + P + 70);
  ctx.fillStyle = '#6c757d';
  ctx.font = '14px "DejaVu Sans", "Liberation Sans", sans-serif';
  ctx.fillText(`advsign snapshot ${new Date().toISOString().slice(0, 19).replace('T', ' ')} UTC · frame ${r.seq}`, xs[0], H - 14);
  return canvas.encode('png');
}
