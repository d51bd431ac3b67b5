/** The `advsign` command: dispatches subcommands; user errors print one line, never a stack trace. */
import { UserError } from '../data/types';
import { TRAIN_HELP } from './train';
import { EVALUATE_HELP } from './evaluate';
import { ATTACK_HELP } from './attack';
import { SERVE_HELP } from './serve';
import { EXPORT_HELP } from './export';
import { STICKER_HELP } from './sticker';
import { VALIDATE_HELP } from './validate';
import { CALIBRATE_HELP } from './calibrate';
import { BENCH_HELP } from './bench';
import { INFO_HELP } from './info';
import { version } from './paths';

const USAGE = `advsign ${version()} — how easily is a traffic-sign classifier fooled?

usage: advsign <command> [options]

  train      train the CNN (GTSRB folder or synthetic signs)
  evaluate   accuracy, clean and under attack; JSON and HTML report
  attack     attack one image
  serve      the live daemon: camera → classify → attack → web page
  sticker    optimise a printable adversarial sticker (PDF)
  calibrate  measure printed colours from a photo of the PDF's calibration strip
  export     write a model as a TFLite flatbuffer (float32 or int8)
  bench      throughput figures (JSON with --json)
  validate   check logits, gradients and attacks against PyTorch (npm run validate)
  info       version, backend, models

'advsign <command> --help' shows a command's options.

exit status (docs/ARCHITECTURE.md):
  0    done
  1    internal error (one line; ADVSIGN_DEBUG=1 for the stack); validate: the reference disagrees
  2    bad input: unknown command or flag, bad value, missing or unreadable file
  75   serve: the camera pipe on stdin closed (systemd restarts the pipeline)
  130  train: interrupted twice (once: finishes the batch, saves the best epoch, exits 0)`;

/** Each command's `--help` text (test/cli-help.test.ts checks it names every flag the command parses). */
export const HELP: Record<string, string> = {
  train: TRAIN_HELP,
  evaluate: EVALUATE_HELP,
  attack: ATTACK_HELP,
  serve: SERVE_HELP,
  export: EXPORT_HELP,
  sticker: STICKER_HELP,
  calibrate: CALIBRATE_HELP,
  bench: BENCH_HELP,
  info: INFO_HELP,
  validate: VALIDATE_HELP,
};

type Command = (argv: string[]) => Promise<void>;

async function load(name: string): Promise<Command | null> {
  // Loaded lazily so `advsign info` does not pay for the server or the renderer.
  switch (name) {
    case 'train':
      return (await import('./train')).trainCommand;
    case 'evaluate':
      return (await import('./evaluate')).evaluateCommand;
    case 'attack':
      return (await import('./attack')).attackCommand;
    case 'serve':
      return (await import('./serve')).serveCommand;
    case 'export':
      return (await import('./export')).exportCommand;
    case 'sticker':
      return (await import('./sticker')).stickerCommand;
    case 'calibrate':
      return (await import('./calibrate')).calibrateCommand;
    case 'bench':
      return (await import('./bench')).benchCommand;
    case 'info':
      return (await import('./info')).infoCommand;
    case 'validate':
      return (await import('./validate')).validateCommand;
    default:
      return null;
  }
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(USAGE);
    return 0;
  }
  if (cmd === '--version' || cmd === '-v') {
    console.log(version());
    return 0;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(HELP[cmd] ?? USAGE);
    return 0;
  }
  try {
    const run = await load(cmd);
    if (!run) throw new UserError(`unknown command '${cmd}' (try 'advsign --help')`);
    await run(rest);
    // A command may have chosen its exit status (serve: 75 when its camera pipe closed).
    return Number(process.exitCode ?? 0);
  } catch (e) {
    if (e instanceof UserError || (e instanceof Error && e.name === 'UserError')) {
      process.stderr.write(`advsign: error: ${e.message}\n`);
      return 2;
    }
    if (process.env.ADVSIGN_DEBUG) throw e;
    const msg = e instanceof Error ? e.message.split('\n')[0] : String(e);
    process.stderr.write(`advsign: internal error: ${msg} (set ADVSIGN_DEBUG=1 for details)\n`);
    return 1;
  }
}
