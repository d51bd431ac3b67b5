/**
 * `advsign sticker`: optimises a printable adversarial sticker (or a printed adversarial sign)
 * with EOT, measures how well it survives held-out print-and-capture transformations (against
 * the same attack optimised without EOT), and writes the PDF, PNGs and a JSON summary.
 */
import * as path from 'node:path';
import { initBackend } from '../inference/backend';
import { measuredOn } from '../inference/model';
import { describeModel, loadModelOnEngine } from '../inference/load-model';
import { CLASS_NAMES, gtsrbClassIds, isGtsrbOrder } from '../data/classes';
import { MODEL_INPUT_FLAGS, MODEL_INPUT_HELP, modelInputFromFlags } from './model-flags';
import { UserError } from '../data/types';
import { parseEps } from '../attack/registry';
import { classFlag, int, jsonTarget, num, parseFlags, str, writeJsonOutput } from './args';
import { defaultModelDir, version } from './paths';
import { alphaOf, MaskSpec, parseArea } from '../sticker/masks';
import { MASK_HELP, maskPlan, maskRows, optimiseWithPlan, targetLossFlag } from './sticker-mask';
import { DEFAULT_PALETTE, loadPalette } from '../sticker/palette';
import { optimizeSticker, signCanvas, STICKER_DEFAULTS, StickerMode, StickerOptions, StickerResult, validateClasses } from '../sticker/optimize';
import { measureRobustness, RobustnessReport } from '../sticker/measure';
import { simulatePrintCapture, RoundTripReport } from '../sticker/roundtrip';
import { exportSticker } from '../sticker/pdf';
import { CLEAN_VIEW, DEFAULT_EOT } from '../sticker/eot';
import { PHOTO_FLAGS, PHOTO_HELP, parseAreas, preparePhotos, readPhotoSplit } from './sticker-photos';
import { photoExtras } from './sticker-photo-run';
import { photoEotConfig } from '../sticker/photos';
import { quantiseArray } from '../data/quantise';
import { LAYER_SIGN_FRACTION, layerPng, modelCheck } from '../sticker/layer';
import type { StickerProgressEvent } from '../sticker/run-file';
import { checkOutputs, checkWritable, OutputFile, writeFilesAtomic } from '../util/atomic-file';

export const STICKER_HELP = `advsign sticker --model models/NAME --sign <classId> --target <classId> --out sticker.pdf [options]

Optimises a sticker (or a whole printed sign) that fools the model after printing and
photographing (Expectation over Transformation), measures its success rate on held-out random
transformations next to the same attack optimised on the clean image only, and writes
sticker.pdf (real size, A4, cut lines, 100 mm scale bar, colour calibration strip),
sticker.json (summary), sticker-sticker.png and sticker-sign.png (print resolution), and
sticker-layer.png (the printed colours alone over the sign's bounding square, alpha = coverage:
what 'advsign serve --sticker sticker.json' draws onto the sign in view), and with --photos
sticker-report.html (held-out real-photo success against area, next to noise, with examples).
The model needs gradients (a .tflite file: its rebuilt graph) and GTSRB's 43 classes in order;
success is measured on its runtime (a .tflite file: the interpreter).

${MODEL_INPUT_HELP}

  --sign N            class of the sign to attack (e.g. 14 = Stop)
  --target N          class to make it look like (e.g. 1 = Speed limit 30); omit for untargeted
  --mode M            sticker (default) or sign (whole-sign perturbation within --eps)
${MASK_HELP}
  --eps X             sign mode budget, e.g. 16/255 (default 16/255)
  --steps N           optimisation steps (default ${STICKER_DEFAULTS.steps})
  --eot-samples N     transformations per step (default ${STICKER_DEFAULTS.eotSamples})
  --sign-mm MM        size of the sign's bounding square (default 600; e.g. 100 for a desk demo)
  --palette FILE      measured printable colours (CSV r,g,b per line, or JSON; 'advsign calibrate'
                      writes one from a photo of the PDF's calibration strip), at least 4
  --nps W --tv W      weights of the non-printability and smoothness terms (default ${STICKER_DEFAULTS.npsWeight}, ${STICKER_DEFAULTS.tvWeight})
  --lr X              Adam learning rate (default ${STICKER_DEFAULTS.learningRate})
  --seed N            seed of the optimisation and of the measurement (default 1)
  --eval N            held-out transformations to measure on (default 200)
  --roundtrip N       simulated print-and-capture photos (default 100, 0 = skip)
${PHOTO_HELP}
  --skip-baseline     do not optimise the non-EOT baseline for comparison
  --engine ort|tfjs   compute engine of the optimisation (default: ort when it loads)
  --backend NAME      tensorflow | wasm | cpu
  --canvas N          side of the optimised sticker canvas in pixels, 16..256 (default ${STICKER_DEFAULTS.canvasSize})
  --json FILE|-       write the summary JSON to FILE too; '-' or a bare --json: stdout only
  --progress-json     progress as JSON lines on stdout instead of bars (for the live page's print jobs)`;

interface Args {
  modelPath: string;
  classId: number;
  target: number | null;
  mode: StickerMode;
  mask: MaskSpec | null;
  eps: number;
  out: string;
  signMm: number;
  areaFraction: number;
}

/** Output file names beside the PDF. */
export function outputPaths(out: string): { pdf: string; json: string; stickerPng: string; signPng: string; layerPng: string; reportHtml: string } {
  const base = out.replace(/\.pdf$/i, '');
  return {
    pdf: out,
    json: `${base}.json`,
    stickerPng: `${base}-sticker.png`,
    signPng: `${base}-sign.png`,
    layerPng: `${base}-layer.png`,
    reportHtml: `${base}-report.html`,
  };
}

function emitProgress(e: StickerProgressEvent): void {
  process.stdout.write(JSON.stringify(e) + '\n');
}

function pct(v: number): string {
  return `${(v * 100).toFixed(1)} %`;
}

export async function stickerCommand(argv: string[]): Promise<void> {
  const f = parseFlags(
    argv,
    {
      model: { type: 'string' },
      sign: { type: 'string' },
      target: { type: 'string' },
      out: { type: 'string' },
      mask: { type: 'string' },
      mode: { type: 'string' },
      eps: { type: 'string' },
      steps: { type: 'string' },
      'eot-samples': { type: 'string' },
      'sign-mm': { type: 'string' },
      seed: { type: 'string' },
      palette: { type: 'string' },
      nps: { type: 'string' },
      tv: { type: 'string' },
      lr: { type: 'string' },
      eval: { type: 'string' },
      roundtrip: { type: 'string' },
      'skip-baseline': { type: 'boolean' },
      json: { type: 'string' },
      backend: { type: 'string' },
      engine: { type: 'string' },
      canvas: { type: 'string' },
      'progress-json': { type: 'boolean' },
      loss: { type: 'string' },
      ...PHOTO_FLAGS,
      ...MODEL_INPUT_FLAGS,
    },
    'sticker',
  );
  const machine = Boolean(f['progress-json']);
  if (machine && jsonTarget(f) === '-') throw new UserError('--json - and --progress-json both write to stdout: pick one');
  checkOutputs(jsonTarget(f));
  // Validate everything cheap before loading the model or optimising.
  const classId = classFlag(f, 'sign');
  if (classId === null) throw new UserError(`sticker: --sign is required (see 'advsign sticker --help')`);
  const target = classFlag(f, 'target');
  validateClasses(classId, target);
  const out = str(f, 'out');
  if (!out) throw new UserError(`sticker: --out is required, e.g. --out sticker.pdf (see 'advsign sticker --help')`);
  if (!/\.pdf$/i.test(out)) throw new UserError(`--out must name a .pdf file, got '${out}'`);
  for (const p of Object.values(outputPaths(out))) checkWritable(p); // before minutes of optimisation
  const modeText = (str(f, 'mode', 'sticker') as string).toLowerCase();
  if (modeText !== 'sticker' && modeText !== 'sign') throw new UserError(`unknown --mode '${modeText}': use sticker or sign`);
  const mode = modeText as StickerMode;
  if (mode === 'sign' && f.mask !== undefined) throw new UserError('--mask applies to --mode sticker only (sign mode perturbs the whole sign)');
  if (mode === 'sticker' && f.eps !== undefined) throw new UserError('--eps applies to --mode sign only (a sticker may use any printable colour)');
  const eps = f.eps !== undefined ? parseEps(str(f, 'eps') as string) : STICKER_DEFAULTS.eps;
  if (mode === 'sign' && !(eps > 0)) throw new UserError(`eps must be above 0 for a printed sign, e.g. 16/255`);
  const canvasSize = int(f, 'canvas', STICKER_DEFAULTS.canvasSize, 16, 256);
  const area = f.area !== undefined ? parseArea(str(f, 'area') as string) : null;
  const areas = f.areas !== undefined ? parseAreas(str(f, 'areas') as string, parseArea) : [];
  if ((area !== null || areas.length) && mode === 'sign') throw new UserError('--area/--areas apply to --mode sticker only');
  const signAlpha = alphaOf(signCanvas(classId, canvasSize));
  const plan = mode === 'sticker' ? await maskPlan({ mask: str(f, 'mask'), area, areas, canvasSize, signAlpha }) : null;
  const mask = plan?.kind === 'fixed' ? plan.mask : null;
  const targetLoss = targetLossFlag(str(f, 'loss'), target !== null, plan);
  const palette = f.palette !== undefined ? loadPalette(str(f, 'palette') as string) : DEFAULT_PALETTE;
  const steps = int(f, 'steps', STICKER_DEFAULTS.steps, 1, 100000);
  const eotSamples = int(f, 'eot-samples', STICKER_DEFAULTS.eotSamples, 1, 256);
  const signMm = num(f, 'sign-mm', 600, 20, 3000);
  const seed = int(f, 'seed', 1, 0, 2 ** 31 - 1);
  const npsWeight = num(f, 'nps', STICKER_DEFAULTS.npsWeight, 0, 1000);
  const tvWeight = num(f, 'tv', STICKER_DEFAULTS.tvWeight, 0, 1000);
  const learningRate = num(f, 'lr', STICKER_DEFAULTS.learningRate, 1e-5, 10);
  const evalN = int(f, 'eval', 200, 1, 100000);
  const roundTripN = int(f, 'roundtrip', 100, 0, 100000);
  const baseline = !f['skip-baseline'];
  const photosDir = str(f, 'photos');
  if (photosDir !== undefined && mode === 'sign') throw new UserError('--photos applies to --mode sticker only');
  if (areas.length && photosDir === undefined) throw new UserError('--areas measures on held-out real photos: add --photos DIR');
  const holdout = num(f, 'holdout', 0.3, 0.01, 0.9);
  const photoShare = num(f, 'photo-share', 0.5, 0, 1);
  const photoViews = int(f, 'photo-views', 4, 1, 1000);
  const photoAngle = num(f, 'photo-angle', 20, 0, 60);
  const split = photosDir !== undefined ? await readPhotoSplit(photosDir, classId, holdout, seed) : null;
  const modelPath = str(f, 'model') ?? defaultModelDir();
  const input = modelInputFromFlags(f);

  const choice = await initBackend(str(f, 'backend'));
  const loaded = await loadModelOnEngine(modelPath, input, str(f, 'engine'));
  const clf = loaded.classifier;
  const engine = loaded.engine;
  if (loaded.description.gradients === null)
    throw new UserError(loaded.description.noGradients ?? `${modelPath} has no gradients: a sticker is optimised by gradient descent`);
  // The renderer draws GTSRB class ids: the model's outputs must be those classes in that order.
  if (!isGtsrbOrder(gtsrbClassIds(clf.classNames ?? CLASS_NAMES)))
    throw new UserError(`sticker needs a model whose outputs are GTSRB's 43 classes in class-id order (${modelPath}: labels ${loaded.description.labels})`);
  validateClasses(classId, target, clf.numClasses);
  const judge = measuredOn(clf);
  const photoConfig = photoEotConfig(clf.inputSize, photoAngle);
  const prepared = split ? preparePhotos(split, classId, clf.inputSize, loaded.description.preprocess, DEFAULT_EOT.supersample) : null;
  const common = {
    classId,
    target,
    mode,
    mask: mask ?? undefined,
    eps: mode === 'sign' ? eps : undefined,
    steps,
    eotSamples,
    learningRate,
    npsWeight,
    tvWeight,
    palette,
    canvasSize,
    seed,
    targetLoss,
    photos: prepared && photoShare > 0 ? { scenes: prepared.train, share: photoShare, config: photoConfig } : undefined,
  };
  const onStep = machine
    ? (st: { step: number; batchSuccess: number }) =>
        emitProgress({ event: 'progress', phase: 'optimise', done: st.step + 1, total: steps, batchSuccess: st.batchSuccess })
    : undefined;
  const optimise = (o: StickerOptions, at: number | null) => (plan ? optimiseWithPlan(clf, plan, o, at, signAlpha) : optimizeSticker(clf, o));
  const robust = await optimise({ ...common, useEot: true, ...(machine ? { onStep } : { progressLabel: 'sticker (EOT)' }) }, null);
  // The baseline in the very mask the sticker has (with --mask auto: the one chosen with EOT).
  const plain = baseline
    ? await optimizeSticker(clf, { ...common, mask: robust.maskSpec ?? undefined, useEot: false, ...(machine ? {} : { progressLabel: 'baseline (no EOT)' }) })
    : null;
  if (machine) emitProgress({ event: 'progress', phase: 'measure', done: 0, total: 0 });
  // Measured as written: the PNGs and the PDF hold 8-bit colours, not the optimiser's floats.
  const written = (r: StickerResult): StickerResult => ({ ...r, adversarial: quantiseArray(r.adversarial) });
  const measure = (r: StickerResult) => measureRobustness(judge, written(r), { n: evalN, seed });
  const heldOut = await measure(robust);
  const heldOutBaseline = plain ? await measure(plain) : null;
  // The clean view (no transformation) tells whether each one works at all before the camera.
  const cleanView = async (r: StickerResult) => (await measureRobustness(judge, written(r), { n: 1, seed, config: CLEAN_VIEW })).successRate === 1;
  const roundTrip = roundTripN > 0 ? await simulatePrintCapture(judge, robust, { n: roundTripN, seed, palette }) : null;
  const roundTripBaseline = roundTripN > 0 && plain ? await simulatePrintCapture(judge, plain, { n: roundTripN, seed, palette }) : null;
  const photo = prepared
    ? await photoExtras(judge, robust, prepared, {
        areas,
        optimiseAt: (at, label) => optimise({ ...common, useEot: true, ...(machine ? {} : { progressLabel: label }) }, at),
        viewsPerPhoto: photoViews,
        seed,
        machine,
        photoShare,
        config: photoConfig,
      })
    : null;

  const a: Args = { modelPath, classId, target, mode, mask, eps, out, signMm, areaFraction: robust.areaFraction };
  const paths = outputPaths(out);
  const targetText = target === null ? 'untargeted' : `${target} ${CLASS_NAMES[target]}`;
  const info = [
    `Model: ${path.relative(process.cwd(), path.resolve(modelPath)) || modelPath}  (backend ${choice.backend}, engine ${engine.engine}, advsign ${version()}).`,
    ...(loaded.description.kind === 'tflite' ? [`Optimised through the file's rebuilt graph; measured on the TFLite interpreter.`] : []),
    `Held-out success (${evalN} random print-and-capture transformations never used in optimisation): ${pct(heldOut.successRate)}` +
      (heldOutBaseline ? `; the same attack optimised without EOT: ${pct(heldOutBaseline.successRate)}.` : '.'),
    `Clean sign under the same transformations: classified correctly ${pct(heldOut.cleanAccuracy)}${target !== null ? `, as the target ${pct(heldOut.cleanTargetRate)}` : ''}.`,
    ...(roundTrip
      ? [
          `Simulated print (palette, dithered) + photo (JPEG) round trip, ${roundTrip.n} photos: ${pct(roundTrip.successRate)}${roundTripBaseline ? ` (without EOT: ${pct(roundTripBaseline.successRate)})` : ''}.`,
        ]
      : []),
    ...(photo ? photo.lines.slice(0, 3) : []),
    'Physical results depend on your printer, paper, light and camera: measure them.',
  ];
  if (machine) emitProgress({ event: 'progress', phase: 'export', done: 0, total: 0 });
  const files = await exportSticker(robust, { signMm, palette, infoLines: info });
  const summary = {
    advsign: version(),
    model: modelPath,
    modelInfo: loaded.description,
    backend: choice.backend,
    engine: engine.engine,
    mode,
    sign: { classId, name: CLASS_NAMES[classId] },
    target: target === null ? null : { classId: target, name: CLASS_NAMES[target] },
    mask: robust.maskDescription,
    areaFraction: robust.areaFraction,
    eps: robust.eps,
    signMm,
    ...(plan?.kind === 'auto'
      ? { maskBitmap: { size: robust.canvasSize, covers: 'sign bounding square', rows: maskRows(robust.printed, robust.canvasSize) } }
      : {}),
    options: robust.options,
    eot: robust.eotConfig,
    heldOut: { eot: heldOut, withoutEot: heldOutBaseline },
    fooledOnCleanView: { eot: await cleanView(robust), withoutEot: plain ? await cleanView(plain) : null },
    roundTrip: roundTrip ? { eot: roundTrip, withoutEot: roundTripBaseline } : null,
    nps: robust.nps,
    tv: robust.tv,
    seconds: { eot: robust.seconds, withoutEot: plain?.seconds ?? null },
    files: {
      pdf: paths.pdf,
      json: paths.json,
      stickerPng: files.stickerPng ? paths.stickerPng : null,
      signPng: paths.signPng,
      layerPng: paths.layerPng,
      pages: files.pageCount,
      stickerPngDpi: files.stickerPngDpi,
      signPngDpi: files.signPngDpi,
    },
    layer: { file: path.basename(paths.layerPng), size: robust.canvasSize, covers: 'sign bounding square', signFraction: LAYER_SIGN_FRACTION },
    modelCheck: await modelCheck(clf),
    pieces: files.pieces,
    realPhotos: photo ? { ...photo.json, report: path.basename(paths.reportHtml) } : null,
    history: thin(robust.history, 100),
  };
  // All at once: a full disk or a kill leaves the previous set whole, never a mix. The layer and
  // its geometry (the JSON's layer and modelCheck) are a contract: see src/sticker/layer.ts.
  const outputs: OutputFile[] = [
    { path: paths.pdf, data: files.pdf },
    { path: paths.signPng, data: files.signPng },
    ...(files.stickerPng ? [{ path: paths.stickerPng, data: files.stickerPng }] : []),
    { path: paths.layerPng, data: await layerPng(robust) },
    ...(photo ? [{ path: paths.reportHtml, data: photo.html }] : []),
    { path: paths.json, data: JSON.stringify(summary, null, 2) + '\n' },
  ];
  writeFilesAtomic(outputs);
  loaded.dispose();
  if (machine) {
    emitProgress({ event: 'done', json: paths.json });
    return;
  }
  const json = jsonTarget(f);
  if (json) writeJsonOutput(json, summary);
  if (json === '-') return;
  for (const line of describeModel(loaded.description)) console.log(line);
  report(a, heldOut, heldOutBaseline, roundTrip, roundTripBaseline, targetText, paths, files.pageCount);
  if (photo) {
    for (const line of photo.lines) console.log(line);
    console.log(`wrote ${paths.reportHtml}`);
  }
}

/** At most ~k entries of the loss history (first, last and evenly spaced). */
function thin<T>(h: T[], k: number): T[] {
  if (h.length <= k) return h;
  const step = (h.length - 1) / (k - 1);
  return Array.from({ length: k }, (_, i) => h[Math.round(i * step)]);
}

function report(
  a: Args,
  heldOut: RobustnessReport,
  base: RobustnessReport | null,
  rt: RoundTripReport | null,
  rtBase: RoundTripReport | null,
  targetText: string,
  paths: ReturnType<typeof outputPaths>,
  pages: number,
): void {
  console.log(`${a.mode === 'sticker' ? 'sticker' : 'printed sign'}: ${a.classId} ${CLASS_NAMES[a.classId]} -> ${targetText}`);
  console.log(
    `robust success rate (${heldOut.n} held-out transformations): ${pct(heldOut.successRate)} with EOT` +
      (base ? `, ${pct(base.successRate)} without EOT` : ''),
  );
  console.log(`clean sign under the same transformations: ${pct(heldOut.cleanAccuracy)} correct`);
  if (rt)
    console.log(`simulated print + photo round trip (${rt.n}): ${pct(rt.successRate)} with EOT` + (rtBase ? `, ${pct(rtBase.successRate)} without EOT` : ''));
  console.log(`area: ${pct(a.areaFraction)} of the sign`);
  console.log(
    `wrote ${paths.pdf} (${pages} pages at ${a.signMm} mm), ${paths.json}, ${a.mode === 'sticker' ? `${paths.stickerPng}, ` : ''}${paths.signPng}, ${paths.layerPng}`,
  );
}
