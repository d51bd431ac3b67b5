/** Pictograms (local coordinates, roughly [-1, 1]^2, y down; fill/stroke style set by the caller). */
import { SKRSContext2D } from '@napi-rs/canvas';
import { SignSpec, SymbolName, ArrowName } from '../classes';
import { colorOf, css } from './colours';
import { PI, Pt, drawText } from './glyphs';
import { POLYGONS, arrowHead, disk, fillRoundedPolygon, line, poly, rect } from './geometry';

/** Car seen from behind, width 1, y in [-0.42, 0.48]. */
function carRear(ctx: SKRSContext2D): void {
  rect(ctx, -0.5, -0.06, 1.0, 0.38, 0.08);
  poly(ctx, [
    [-0.4, -0.04],
    [-0.3, -0.42],
    [0.3, -0.42],
    [0.4, -0.04],
  ]);
  rect(ctx, -0.46, 0.28, 0.22, 0.2, 0.03);
  rect(ctx, 0.24, 0.28, 0.22, 0.2, 0.03);
}

/** Lorry seen from behind, width 1, y in [-0.62, 0.48]. */
function truckRear(ctx: SKRSContext2D): void {
  rect(ctx, -0.5, -0.62, 1.0, 0.94, 0.04);
  rect(ctx, -0.48, 0.28, 0.28, 0.2, 0.03);
  rect(ctx, 0.2, 0.28, 0.28, 0.2, 0.03);
}

/** Lorry side view, x in [-0.85, 0.85], y in [-0.5, 0.5]. */
function truckSide(ctx: SKRSContext2D): void {
  poly(ctx, [
    [-0.85, 0.25],
    [-0.85, -0.1],
    [-0.72, -0.38],
    [-0.46, -0.38],
    [-0.46, 0.25],
  ]);
  rect(ctx, -0.4, -0.5, 1.25, 0.7, 0.03);
  rect(ctx, -0.85, 0.18, 1.7, 0.12);
  disk(ctx, 0.15, ctx.fillStyle as string, -0.62, 0.34);
  disk(ctx, 0.15, ctx.fillStyle as string, 0.36, 0.34);
  disk(ctx, 0.15, ctx.fillStyle as string, 0.66, 0.34);
}

/** Walking/running stick figure facing left, feet at y ~ 0.95. */
function walker(ctx: SKRSContext2D, running: boolean): void {
  disk(ctx, 0.17, ctx.fillStyle as string, 0.02, -0.76);
  line(
    ctx,
    [
      [0.04, -0.52],
      [-0.04, 0.12],
    ],
    0.24,
  );
  const lw = 0.15;
  if (running) {
    line(
      ctx,
      [
        [-0.04, 0.1],
        [-0.42, 0.45],
        [-0.5, 0.9],
      ],
      lw,
    );
    line(
      ctx,
      [
        [-0.04, 0.1],
        [0.25, 0.5],
        [0.52, 0.75],
      ],
      lw,
    );
    line(
      ctx,
      [
        [0.03, -0.42],
        [-0.35, -0.12],
        [-0.5, -0.3],
      ],
      lw,
    );
    line(
      ctx,
      [
        [0.03, -0.42],
        [0.38, -0.15],
      ],
      lw,
    );
  } else {
    line(
      ctx,
      [
        [-0.04, 0.1],
        [-0.3, 0.92],
      ],
      lw,
    );
    line(
      ctx,
      [
        [-0.04, 0.1],
        [0.2, 0.5],
        [0.22, 0.92],
      ],
      lw,
    );
    line(
      ctx,
      [
        [0.03, -0.42],
        [-0.3, -0.02],
      ],
      lw,
    );
    line(
      ctx,
      [
        [0.03, -0.42],
        [0.3, -0.05],
      ],
      lw,
    );
  }
}

function drawSymbol(ctx: SKRSContext2D, name: SymbolName): void {
  const fill = ctx.fillStyle as string;
  ctx.strokeStyle = fill;
  switch (name) {
    case 'crossroad':
      poly(ctx, [
        [-0.09, -0.95],
        [0.09, -0.95],
        [0.19, 0.95],
        [-0.19, 0.95],
      ]);
      rect(ctx, -0.72, -0.08, 1.44, 0.17);
      break;
    case 'exclamation':
      poly(ctx, [
        [-0.15, -0.95],
        [0.15, -0.95],
        [0.08, 0.4],
        [-0.08, 0.4],
      ]);
      disk(ctx, 0.16, fill, 0, 0.73);
      break;
    case 'curve-left':
    case 'curve-right': {
      ctx.save();
      if (name === 'curve-right') ctx.scale(-1, 1);
      ctx.lineWidth = 0.3;
      ctx.lineCap = 'butt';
      ctx.beginPath();
      ctx.moveTo(0.28, 0.95);
      ctx.lineTo(0.28, 0.05);
      ctx.quadraticCurveTo(0.28, -0.55, -0.3, -0.55);
      ctx.stroke();
      arrowHead(ctx, -0.7, -0.55, PI, 0.45, 0.32);
      ctx.restore();
      break;
    }
    case 'double-curve':
      ctx.lineWidth = 0.26;
      ctx.lineCap = 'butt';
      ctx.beginPath();
      ctx.moveTo(0.3, 0.95);
      ctx.lineTo(0.3, 0.55);
      ctx.bezierCurveTo(0.3, 0.2, -0.32, 0.25, -0.32, -0.1);
      ctx.bezierCurveTo(-0.32, -0.4, 0.25, -0.35, 0.25, -0.6);
      ctx.stroke();
      arrowHead(ctx, 0.25, -1.0, -PI / 2, 0.42, 0.28);
      break;
    case 'bumps':
      ctx.beginPath();
      ctx.moveTo(-0.95, 0.8);
      ctx.lineTo(-0.95, 0.45);
      ctx.arc(-0.47, 0.45, 0.44, PI, 2 * PI);
      ctx.arc(0.47, 0.45, 0.44, PI, 2 * PI);
      ctx.lineTo(0.95, 0.8);
      ctx.closePath();
      ctx.fill();
      break;
    case 'slippery':
      ctx.save();
      ctx.translate(0.05, -0.45);
      ctx.rotate(-0.3);
      ctx.scale(0.95, 0.95);
      carRear(ctx);
      ctx.restore();
      for (const x0 of [-0.35, 0.3]) {
        const pts: Pt[] = [];
        for (let i = 0; i <= 20; i++) {
          const t = i / 20;
          pts.push([x0 + 0.18 * Math.sin(t * 2 * PI) - 0.15 * t, 0.15 + 0.8 * t]);
        }
        line(ctx, pts, 0.12);
      }
      break;
    case 'narrows-right':
      line(
        ctx,
        [
          [-0.42, -0.95],
          [-0.42, 0.95],
        ],
        0.2,
        'butt',
      );
      ctx.lineWidth = 0.2;
      ctx.beginPath();
      ctx.moveTo(0.5, 0.95);
      ctx.lineTo(0.5, 0.3);
      ctx.bezierCurveTo(0.5, 0.0, 0.12, 0.05, 0.12, -0.3);
      ctx.lineTo(0.12, -0.95);
      ctx.stroke();
      break;
    case 'road-work':
      // Worker shovelling a pile of earth.
      disk(ctx, 0.16, fill, -0.38, -0.7);
      line(
        ctx,
        [
          [-0.33, -0.48],
          [-0.15, 0.18],
        ],
        0.24,
      );
      line(
        ctx,
        [
          [-0.15, 0.18],
          [-0.42, 0.92],
        ],
        0.15,
      );
      line(
        ctx,
        [
          [-0.15, 0.18],
          [0.05, 0.55],
          [0.02, 0.92],
        ],
        0.15,
      );
      line(
        ctx,
        [
          [-0.3, -0.35],
          [-0.05, -0.1],
          [0.1, 0.12],
        ],
        0.13,
      );
      line(
        ctx,
        [
          [-0.22, -0.2],
          [0.32, 0.52],
        ],
        0.08,
      );
      poly(ctx, [
        [0.24, 0.5],
        [0.42, 0.38],
        [0.58, 0.6],
        [0.4, 0.72],
      ]);
      ctx.beginPath();
      ctx.ellipse(0.66, 0.95, 0.4, 0.32, 0, PI, 2 * PI);
      ctx.fill();
      break;
    case 'traffic-signals':
      rect(ctx, -0.32, -0.92, 0.64, 1.84, 0.1);
      disk(ctx, 0.21, css([0.9, 0.1, 0.1]), 0, -0.56);
      disk(ctx, 0.21, css([1.0, 0.75, 0.05]), 0, 0);
      disk(ctx, 0.21, css([0.1, 0.7, 0.3]), 0, 0.56);
      break;
    case 'pedestrian':
      walker(ctx, false);
      break;
    case 'children':
      ctx.save();
      ctx.translate(-0.3, -0.05);
      ctx.scale(0.9, 0.9);
      walker(ctx, true);
      ctx.restore();
      ctx.save();
      ctx.translate(0.42, 0.28);
      ctx.scale(0.62, 0.62);
      walker(ctx, true);
      ctx.restore();
      break;
    case 'bicycle':
      ctx.lineWidth = 0.1;
      for (const cx of [-0.52, 0.52]) {
        ctx.beginPath();
        ctx.arc(cx, 0.42, 0.36, 0, 2 * PI);
        ctx.stroke();
      }
      line(
        ctx,
        [
          [-0.52, 0.42],
          [-0.08, 0.42],
          [0.3, -0.12],
          [-0.25, -0.12],
          [-0.52, 0.42],
        ],
        0.1,
      );
      line(
        ctx,
        [
          [-0.08, 0.42],
          [-0.3, -0.3],
        ],
        0.1,
      );
      line(
        ctx,
        [
          [-0.45, -0.32],
          [-0.15, -0.32],
        ],
        0.12,
      );
      line(
        ctx,
        [
          [0.52, 0.42],
          [0.24, -0.38],
          [0.44, -0.42],
        ],
        0.1,
      );
      break;
    case 'snowflake': {
      for (let k = 0; k < 3; k++) {
        const a = PI / 2 + (k * PI) / 3;
        const c = Math.cos(a);
        const s = Math.sin(a);
        line(
          ctx,
          [
            [-0.85 * c, -0.85 * s],
            [0.85 * c, 0.85 * s],
          ],
          0.13,
        );
        for (const sign of [-1, 1]) {
          const bx = sign * 0.5 * c;
          const by = sign * 0.5 * s;
          for (const side of [-1, 1]) {
            const b = a + (sign > 0 ? 0 : PI) + side * (PI / 4);
            line(
              ctx,
              [
                [bx, by],
                [bx + 0.3 * Math.cos(b), by + 0.3 * Math.sin(b)],
              ],
              0.1,
            );
          }
        }
      }
      break;
    }
    case 'deer': {
      // Leaping to the left.
      ctx.beginPath();
      ctx.ellipse(0.05, 0.05, 0.5, 0.22, 0.35, 0, 2 * PI);
      ctx.fill();
      poly(ctx, [
        [-0.35, -0.05],
        [-0.55, -0.5],
        [-0.42, -0.55],
        [-0.15, -0.1],
      ]);
      ctx.beginPath();
      ctx.ellipse(-0.62, -0.55, 0.17, 0.1, -0.3, 0, 2 * PI);
      ctx.fill();
      line(
        ctx,
        [
          [-0.5, -0.62],
          [-0.38, -0.95],
        ],
        0.07,
      );
      line(
        ctx,
        [
          [-0.43, -0.8],
          [-0.25, -0.88],
        ],
        0.06,
      );
      line(
        ctx,
        [
          [-0.42, -0.1],
          [-0.75, 0.05],
          [-0.85, -0.1],
        ],
        0.1,
      );
      line(
        ctx,
        [
          [-0.32, 0.0],
          [-0.65, 0.25],
          [-0.78, 0.2],
        ],
        0.1,
      );
      line(
        ctx,
        [
          [0.45, 0.25],
          [0.75, 0.55],
          [0.92, 0.85],
        ],
        0.11,
      );
      line(
        ctx,
        [
          [0.35, 0.3],
          [0.55, 0.65],
          [0.62, 0.95],
        ],
        0.11,
      );
      line(
        ctx,
        [
          [0.5, 0.12],
          [0.68, 0.02],
        ],
        0.08,
      );
      break;
    }
  }
}

function drawArrow(ctx: SKRSContext2D, name: ArrowName): void {
  const w = 0.28;
  ctx.strokeStyle = ctx.fillStyle as string;
  ctx.lineWidth = w;
  ctx.lineCap = 'butt';
  ctx.lineJoin = 'round';
  const ahead = (): void => {
    line(
      ctx,
      [
        [0, 0.9],
        [0, -0.3],
      ],
      w,
      'butt',
    );
    arrowHead(ctx, 0, -0.9, -PI / 2, 0.62, 0.45);
  };
  switch (name) {
    case 'ahead':
      ahead();
      break;
    case 'turn-right':
    case 'turn-left':
      ctx.save();
      if (name === 'turn-left') ctx.scale(-1, 1);
      ctx.beginPath();
      ctx.moveTo(-0.35, 0.9);
      ctx.lineTo(-0.35, 0.0);
      ctx.quadraticCurveTo(-0.35, -0.3, 0.0, -0.3);
      ctx.lineTo(0.3, -0.3);
      ctx.stroke();
      arrowHead(ctx, 0.88, -0.3, 0, 0.6, 0.45);
      ctx.restore();
      break;
    case 'ahead-or-right':
    case 'ahead-or-left':
      ctx.save();
      if (name === 'ahead-or-left') ctx.scale(-1, 1);
      ctx.translate(-0.22, 0);
      line(
        ctx,
        [
          [0, 0.92],
          [0, -0.4],
        ],
        w,
        'butt',
      );
      arrowHead(ctx, 0, -0.92, -PI / 2, 0.55, 0.4);
      ctx.beginPath();
      ctx.moveTo(0, 0.5);
      ctx.quadraticCurveTo(0, 0.12, 0.38, 0.12);
      ctx.lineTo(0.55, 0.12);
      ctx.stroke();
      arrowHead(ctx, 1.05, 0.12, 0, 0.55, 0.4);
      ctx.restore();
      break;
    case 'keep-right':
    case 'keep-left':
      ctx.save();
      ctx.rotate(name === 'keep-right' ? (3 * PI) / 4 : (-3 * PI) / 4);
      ahead();
      ctx.restore();
      break;
    case 'roundabout': {
      // Three arrows circulating anticlockwise (right-hand traffic).
      const r = 0.56;
      ctx.lineWidth = 0.24;
      for (let k = 0; k < 3; k++) {
        const a0 = -PI / 2 + 0.35 + (k * 2 * PI) / 3;
        const a1 = a0 - 1.25;
        ctx.beginPath();
        ctx.arc(0, 0, r, a0, a1, true);
        ctx.stroke();
        const px = r * Math.cos(a1);
        const py = r * Math.sin(a1);
        const dir = Math.atan2(-Math.cos(a1), Math.sin(a1));
        arrowHead(ctx, px + 0.38 * Math.cos(dir), py + 0.38 * Math.sin(dir), dir, 0.44, 0.3);
      }
      break;
    }
  }
}

/** "End of …" band: thin dark lines sloping down from right to left (Vienna convention C,17). */
function drawStrike(ctx: SKRSContext2D): void {
  ctx.save();
  ctx.beginPath();
  ctx.arc(0, 0, 0.93, 0, 2 * PI);
  ctx.clip();
  ctx.strokeStyle = css([0.15, 0.15, 0.16]);
  const n = Math.SQRT1_2;
  for (let i = -2; i <= 2; i++) {
    const o = i * 0.075;
    line(
      ctx,
      [
        [1 + o * n, -1 + o * n],
        [-1 + o * n, 1 + o * n],
      ],
      0.035,
      'butt',
    );
  }
  ctx.restore();
}

function drawPictogram(ctx: SKRSContext2D, spec: SignSpec): void {
  const p = spec.pictogram;
  ctx.save();
  switch (p.kind) {
    case 'none':
      break;
    case 'number': {
      ctx.strokeStyle = colorOf(p.color);
      // As large as the ring allows: digits must stay legible at 32 px.
      if (p.text.length >= 3) drawText(ctx, p.text, 0, 0, 0.64, 0.13, 0.09, 0.8);
      else drawText(ctx, p.text, 0, 0, 0.74, 0.15, 0.12);
      break;
    }
    case 'text':
      ctx.strokeStyle = colorOf(p.color);
      drawText(ctx, p.text, 0, 0, 0.48, 0.11, 0.09, 0.92);
      break;
    case 'overtake': {
      ctx.save();
      ctx.translate(-0.34, p.left === 'truck' ? 0.1 : 0.05);
      ctx.scale(0.58, 0.58);
      ctx.fillStyle = colorOf(p.leftColor);
      if (p.left === 'truck') truckRear(ctx);
      else carRear(ctx);
      ctx.restore();
      ctx.save();
      ctx.translate(0.34, 0.05);
      ctx.scale(0.58, 0.58);
      ctx.fillStyle = colorOf(p.rightColor);
      carRear(ctx);
      ctx.restore();
      break;
    }
    case 'truck':
      ctx.scale(0.72, 0.72);
      ctx.fillStyle = colorOf(p.color);
      truckSide(ctx);
      break;
    case 'bar':
      ctx.fillStyle = colorOf(p.color);
      rect(ctx, -0.66, -0.17, 1.32, 0.34);
      break;
    case 'symbol':
      // Centred a little below the triangle's incentre, where the white area is widest.
      ctx.translate(0, 0.28);
      ctx.scale(0.41, 0.41);
      ctx.fillStyle = colorOf(p.color);
      drawSymbol(ctx, p.name);
      break;
    case 'arrow':
      ctx.scale(0.74, 0.74);
      ctx.fillStyle = colorOf(p.color);
      drawArrow(ctx, p.name);
      break;
  }
  ctx.restore();
}

export function drawSign(ctx: SKRSContext2D, spec: SignSpec): void {
  const white = colorOf('white');
  switch (spec.shape) {
    case 'circle':
      if (spec.border === 'red') {
        disk(ctx, 1, white);
        disk(ctx, 0.96, colorOf('red'));
        disk(ctx, 0.76, colorOf(spec.fill));
      } else if (spec.border === 'none' && spec.fill === 'white') {
        // "End of" signs: no border, only a thin dark rim.
        disk(ctx, 1, css([0.25, 0.25, 0.26]));
        disk(ctx, 0.965, white);
      } else {
        disk(ctx, 1, white);
        disk(ctx, 0.95, colorOf(spec.fill));
      }
      break;
    case 'triangle':
    case 'inverted-triangle': {
      const p = POLYGONS[spec.shape];
      const band = spec.shape === 'triangle' ? 0.15 : 0.2;
      fillRoundedPolygon(ctx, p, 0, 0.09, white);
      fillRoundedPolygon(ctx, p, 0.03, 0.08, colorOf(spec.border));
      fillRoundedPolygon(ctx, p, 0.03 + band, 0.03, colorOf(spec.fill));
      break;
    }
    case 'octagon': {
      const p = POLYGONS.octagon;
      fillRoundedPolygon(ctx, p, 0, 0.04, white);
      fillRoundedPolygon(ctx, p, 0.05, 0.03, colorOf(spec.fill));
      break;
    }
    case 'diamond': {
      const p = POLYGONS.diamond;
      fillRoundedPolygon(ctx, p, 0, 0.05, colorOf('black'));
      fillRoundedPolygon(ctx, p, 0.025, 0.04, colorOf(spec.border));
      fillRoundedPolygon(ctx, p, 0.22, 0.02, colorOf(spec.fill));
      break;
    }
  }
  drawPictogram(ctx, spec);
  if (spec.strike) drawStrike(ctx);
}
