/**
 * `advsign serve`: the live daemon (camera → ROI → classify → attack → web page), one process.
 * Configuration: flags > ADVSIGN_* environment > JSON config file > defaults. SIGTERM/SIGINT
 * close the server, stop capture processes, unexport GPIO pins and free the model's tensors.
 */
import { initBackend } from '../inference/backend';
import { liveOrtThreads, releaseClassifier, useEngine } from '../inference/engine';
import { tf } from '../inference/tf';
import { onEngine } from '../inference/load-model';
import { parseFlags } from './args';
import { configFlagOptions, loadConfig, DEFAULT_CONFIG_FILE, Origin } from '../server/config';
import { createLogger } from '../server/log';
import { startServer } from '../server/app';
import { loadServeModel } from '../server/model';
import { modelInputOptions } from './model-flags';
import { createGpio } from '../gpio';
import { SOURCE_SYNTAX, parseSourceSpec } from '../capture/factory';
import type { SourceStatus } from '../capture/types';

export const SERVE_HELP = `advsign serve [options]

  --source SPEC          ${SOURCE_SYNTAX}
                         (default auto: a camera when one is found, else the synthetic scene)
                         ffmpeg inputs: /dev/video0, testsrc, a file, rtsp://… / http://…, or - (stdin:
                         rpicam-vid -t 0 --codec mjpeg -o - | advsign serve --source ffmpeg:-)
  --sources A,B          extra sources offered on the page (clients can pick only from this list)
  --port N               default 8080 (0: any free port)
  --host ADDR            default 127.0.0.1; any other address requires an access token
  --token T              access token (generated and printed once when needed and not given)
  --require-token        require the token even on loopback
  --model PATH           a model folder or .tflite file (default models/gtsrb-cnn; 'untrained' runs with random weights)
  --input-range LO,HI    the model's pixel values (0,1 default; 0,255; -1,1); --labels FILE its class names
  --preprocess whole     feed the whole frame (default crop: the ROI below)
  --attack NAME          none | fgsm | bim | pgd | mifgsm (default bim)
  --eps E                e.g. 8/255 (0 … 32/255; default 12/255)
  --loss L               ce | margin | dlr: what the attack climbs (default margin)
  --targeted --target N  aim for class N (default 14)
  --steps N              iterations of bim/pgd/mifgsm (default 2)
  --roi x,y,w,h          fractions of the frame (default: centre square, 70 % of the short side)
  --sticker RUN.json     draw a 'sticker' run's sticker onto the sign in view (its -layer.png beside it);
                         the page shows clean and with-sticker side by side (the page can load others)
  --print-dir DIR        where the page's print jobs keep their PDFs (default ./prints)
  --width/--height/--fps capture size and rate (default 640×480 at 30)
  --jpeg-quality N       frames sent to the page (default 80)
  --gpio-button N        BCM pin of the push button (short: attack on/off, long: snapshot)
  --gpio-button-active-low  the button reads 0 when pressed (wired to GND with a pull-up)
  --gpio-led-ok N        BCM pin of the green LED (model right)
  --gpio-led-fooled N    BCM pin of the red LED (model fooled)
  --gpio-sysfs DIR       sysfs root (default /sys); --gpio-chip LABEL for non-Pi boards
  --gpio-long-press-ms N a press this long saves a snapshot (default 1500)
  --snapshot-dir DIR     where button snapshots go (default ./snapshots)
  --max-clients N        viewers with the token at once (default 20)
  --max-connections N    open TCP connections at most (default 256); requests must send their
                         headers within 10 s, idle connections close after 5 s, and a socket
                         that has not presented the token within 5 s is closed
  --ffmpeg-input-args=A,B extra ffmpeg input options (e.g. =-input_format,mjpeg: a USB camera's own MJPEG)
  --log-level L          debug | info | warn | error | silent (JSON lines on stderr)
  --backend NAME         tensorflow | wasm | cpu
  --engine ort|tfjs      compute engine for inference and attacks (default: ort when it loads)
  --config FILE          JSON file with the same keys in camelCase (default ${DEFAULT_CONFIG_FILE} if present)

Environment: ADVSIGN_PORT, ADVSIGN_HOST, ADVSIGN_SOURCE, ADVSIGN_TOKEN, ADVSIGN_MODEL, ADVSIGN_EPS, …
(every key as ADVSIGN_SNAKE_CASE), ADVSIGN_CONFIG for the file.
Endpoints: / (page), /healthz, /metrics (Prometheus text), /metrics.json (the same as JSON), /api/snapshot.png,
/api/print?size_mm=200 (this frame only), POST /api/sticker (a sticker run from the page), /api/jobs/ID/FILE.pdf (a print job's PDF)`;

function tokenOrigin(origin: Origin, file: string | null): string {
  if (origin === 'flag') return 'the one given with --token';
  if (origin === 'env') return 'the one in ADVSIGN_TOKEN';
  return `the one in ${file ?? 'the config file'}`;
}

export async function serveCommand(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, { ...configFlagOptions(), config: { type: 'string' } }, 'serve');
  const { config, file, origins } = loadConfig({ flags, env: process.env });
  // Bad source specs fail here, in one line, before the model is loaded or a port is bound.
  for (const s of [config.source, ...config.sources]) parseSourceSpec(s);
  const log = createLogger({ level: config.logLevel });
  if (file) log.info('config.loaded', { file });
  const backend = await initBackend(config.backend ?? undefined);
  const input = modelInputOptions(config);
  // 'whole': the model sees the whole frame unless a ROI is set.
  if (config.preprocess === 'whole' && !config.roi) config.roi = { x: 0, y: 0, w: 1, h: 1 };
  const model = await loadServeModel(config.model, input);
  if (model.untrained) log.warn('model.untrained', { note: 'random weights: predictions are meaningless' });
  // The live loop classifies and attacks on the fastest engine; tfjs stays behind it for the rest.
  const { classifier, engine } = useEngine(model.classifier, config.engine ?? undefined, liveOrtThreads());
  if (model.details) {
    const d = onEngine(model.details, engine);
    log.info('model.runtime', { predictions: d.predictions, gradients: d.gradients ?? d.noGradients });
  }
  log.info('model.loaded', {
    model: model.description,
    backend: backend.backend,
    engine: engine.engine,
    engineReason: engine.reason,
    inputSize: classifier.inputSize,
  });

  const gpio = createGpio(
    {
      button: config.gpioButton,
      ledOk: config.gpioLedOk,
      ledFooled: config.gpioLedFooled,
      sysfsRoot: config.gpioSysfs,
      chipLabel: config.gpioChip ?? undefined,
      longPressMs: config.gpioLongPressMs,
      buttonActiveLow: config.gpioButtonActiveLow,
    },
    { log },
  );
  if (gpio.state.mode !== 'disabled')
    log.info('gpio.ready', { mode: gpio.state.mode, pins: gpio.state.pins, ...(gpio.state.reason ? { reason: gpio.state.reason } : {}) });

  let server;
  try {
    server = await startServer({ config, classifier, logger: log, gpio, modelPath: model.path });
  } catch (e) {
    gpio.close();
    releaseClassifier(classifier);
    throw e;
  }
  // A generated token is printed (stdout, never the logs): nobody else could know it. A configured
  // one never is: under systemd stdout is the journal, and the secret would leave its 0640 file.
  const withToken = server.token && server.tokenGenerated ? `?token=${encodeURIComponent(server.token)}` : '';
  for (const u of server.urls) process.stdout.write(`advsign: open ${u}${withToken}\n`);
  if (withToken) process.stdout.write('advsign: (token generated for this run; set --token or ADVSIGN_TOKEN to keep one)\n');
  else if (server.token)
    process.stdout.write(`advsign: the page needs the access token (${tokenOrigin(origins.token, file)}): add ?token=… to the address once\n`);

  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (stopping) {
        log.warn('shutdown.forced', { signal: sig });
        process.exit(1);
      }
      stopping = true;
      log.info('shutdown', { signal: sig });
      void (async () => {
        try {
          await server.close();
        } catch (e) {
          log.error('shutdown.failed', { error: (e as Error).message });
        }
        gpio.close();
        releaseClassifier(classifier);
        log.flush(); // the counts of rate-limited lines, before the last line
        log.info('shutdown.done', { numTensors: tf.memory().numTensors });
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
        // Anything still holding the loop open after a clean shutdown is a bug, not a reason to hang.
        setTimeout(() => process.exit(process.exitCode ?? 0), 3000).unref();
        resolve();
      })();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    // A camera pipe into stdin that closed cannot be reopened from here: exit with EX_TEMPFAIL
    // (75) after a clean shutdown, so systemd (Restart=on-failure) restarts the whole pipeline.
    server.daemon.on('status', (st: SourceStatus) => {
      if (!st.final || stopping) return;
      log.error('source.ended', { source: st.source, message: st.message ?? '', exitCode: 75 });
      process.exitCode = 75;
      onSignal('SIGTERM');
    });
  });
}
