/**
 * After `advsign sticker --photos` has optimised its sticker: the held-out real-photo measurement
 * (sticker, noise, uniform patch, per condition), the success-against-area curve (one more
 * optimisation per --areas entry, same options), and the HTML report.
 */
import type { Classifier } from '../inference/model';
import type { EotConfig } from '../sticker/eot';
import { CLASS_NAMES } from '../data/classes';
import type { StickerResult } from '../sticker/optimize';
import { measureOnPhotos } from '../sticker/photo-measure';
import { areaPoint, AreaPoint, examples, reportHtml } from '../sticker/photo-report';
import { photoLines, photoReportJson, PreparedPhotos } from './sticker-photos';
import type { StickerProgressEvent } from '../sticker/run-file';

export interface PhotoExtraOptions {
  areas: number[];
  /** Optimises one more sticker, like the main one but at `area` of the sign. */
  optimiseAt: (area: number, progressLabel: string) => Promise<StickerResult>;
  viewsPerPhoto: number;
  seed: number;
  machine: boolean;
  photoShare: number;
  /** The EOT family on the photos (optimisation and measurement alike). */
  config: EotConfig;
}

export interface PhotoExtras {
  json: ReturnType<typeof photoReportJson> & {
    folder: string;
    kind: 'gtsrb' | 'own';
    signInBox: number;
    tracks: { train: number; heldOut: number };
    trainPhotos: number;
    trainTracks: string[];
    heldOutTracks: string[];
    photoShare: number;
    photoMaxAngleDeg: number;
    areaCurve: AreaPoint[];
  };
  lines: string[];
  html: string;
}

const tracksOf = (photos: { group: string }[]) => [...new Set(photos.map((x) => x.group))].sort();

function attackOf(r: StickerResult) {
  return { classId: r.classId, target: r.target, canvasSize: r.canvasSize, sticker: r.sticker, printed: r.printed };
}

export async function photoExtras(judge: Classifier, robust: StickerResult, p: PreparedPhotos, o: PhotoExtraOptions): Promise<PhotoExtras> {
  const measure = (r: StickerResult) => measureOnPhotos(judge, attackOf(r), p.heldOut, { viewsPerPhoto: o.viewsPerPhoto, seed: o.seed, config: o.config });
  if (o.machine) process.stdout.write(JSON.stringify({ event: 'progress', phase: 'measure', done: 0, total: 0 } satisfies StickerProgressEvent) + '\n');
  const main = await measure(robust);
  const points: AreaPoint[] = [];
  for (const area of o.areas) {
    if (Math.abs(area - robust.areaFraction) < 0.005) continue; // the main sticker is this point
    const r = await o.optimiseAt(area, `sticker ${(area * 100).toFixed(0)} %`);
    points.push(areaPoint(area, r.areaFraction, await measure(r)));
  }
  points.push(areaPoint(robust.areaFraction, robust.areaFraction, main));
  points.sort((a, b) => a.measuredArea - b.measuredArea);
  const targeted = robust.target !== null;
  const title = `Sticker ${robust.classId} ${CLASS_NAMES[robust.classId]} → ${targeted ? `${robust.target} ${CLASS_NAMES[robust.target as number]}` : 'untargeted'}: held-out real photos`;
  const html = reportHtml({
    title,
    targeted,
    main,
    area: robust.areaFraction,
    points,
    examples: await examples(judge, attackOf(robust), p.heldOut, o.seed, o.config),
    notes: [
      `Photos: ${p.split.folder.dir} (${p.split.folder.kind}); optimised on ${p.train.length} photos of ${p.split.tracks.train} tracks, ${(o.photoShare * 100).toFixed(0)} % of each step's EOT samples; held out ${p.heldOut.length} photos of ${p.split.tracks.heldOut} tracks.`,
    ],
  });
  const lines = photoLines(main, p, targeted, robust.areaFraction);
  if (points.length > 1) {
    lines.push(
      'success against area (held-out photos; sticker / noise / uniform): ' +
        points
          .map(
            (q) =>
              `${(q.measuredArea * 100).toFixed(0)} %: ${(q.sticker * 100).toFixed(1)} / ${(q.noise * 100).toFixed(1)} / ${(q.uniform * 100).toFixed(1)} %`,
          )
          .join('; '),
    );
  }
  return {
    json: {
      folder: p.split.folder.dir,
      kind: p.split.folder.kind,
      signInBox: p.split.folder.signInBox,
      tracks: p.split.tracks,
      trainPhotos: p.train.length,
      trainTracks: tracksOf(p.split.train),
      heldOutTracks: tracksOf(p.split.heldOut),
      photoShare: o.photoShare,
      photoMaxAngleDeg: o.config.maxYawDeg,
      ...photoReportJson(main),
      areaCurve: points,
    },
    lines,
    html,
  };
}
