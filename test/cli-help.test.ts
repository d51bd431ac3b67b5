/**
 * `--help` as a user meets it: every command has its own, it documents every flag the command's
 * parser accepts (read from the parser itself, not from a list kept here), and the top-level
 * help and the README give the exit codes.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as args from '../src/cli/args';
import { HELP } from '../src/cli/index';
import { ROOT, runCli } from './helpers';

type OptionTable = Parameters<typeof args.parseFlags>[1];
type Command = (argv: string[]) => Promise<void>;

const COMMANDS = ['train', 'evaluate', 'attack', 'serve', 'sticker', 'calibrate', 'export', 'bench', 'info', 'validate'];

/**
 * The option tables a command passes to parseFlags, captured by stopping it there: nothing is
 * loaded or run past the parser. (The compiled CommonJS calls parseFlags through the module object.)
 */
async function optionTables(run: Command): Promise<OptionTable[]> {
  const tables: OptionTable[] = [];
  const stop = new Error('stopped at the parser');
  const mod = args as { parseFlags: typeof args.parseFlags };
  const real = mod.parseFlags;
  mod.parseFlags = (_argv, options) => {
    tables.push(options);
    throw stop;
  };
  try {
    await run([]).catch((e: unknown) => {
      if (e !== stop) throw e;
    });
  } finally {
    mod.parseFlags = real;
  }
  return tables;
}

describe('--help', () => {
  it('every command listed by advsign --help has its own help, documenting every flag its parser accepts', async () => {
    const usage = await runCli(['--help']);
    assert.equal(usage.code, 0);
    assert.deepEqual(Object.keys(HELP).sort(), [...COMMANDS].sort());
    for (const name of COMMANDS) assert.match(usage.stdout, new RegExp(`^  ${name}\\s`, 'm'), `${name} listed`);
    // Each command's help text is what `advsign <command> --help` prints (checked by child process below).
    for (const name of COMMANDS) {
      const mod = (await import(`../src/cli/${name}`)) as Record<string, Command>;
      const tables = await optionTables(mod[`${name}Command`]);
      assert.ok(tables.length > 0, `${name} parses its flags with parseFlags`);
      const help = HELP[name];
      assert.ok(help?.startsWith(`advsign ${name}`), `${name} has its own help`);
      const missing = tables.flatMap((t) => Object.keys(t)).filter((flag) => !new RegExp(`--${flag}(?![\\w-])`).test(help));
      assert.deepEqual(missing, [], `advsign ${name} --help does not document: ${missing.map((f) => `--${f}`).join(' ')}`);
    }
  });

  it('bench and info --help, as typed: the live and quick flags, exit 0, nothing run', async () => {
    const [bench, info] = await Promise.all([runCli(['bench', '--help']), runCli(['info', '-h'])]);
    assert.equal(bench.code, 0, bench.stderr);
    assert.match(bench.stdout, /^advsign bench/);
    for (const flag of ['--live', '--seconds', '--frames', '--quick', '--no-cpu', '--no-peer', '--json', '--engine'])
      assert.ok(bench.stdout.includes(flag), flag);
    assert.equal(info.code, 0, info.stderr);
    assert.match(info.stdout, /^advsign info/);
    for (const flag of ['--json', '--backend', '--engine']) assert.ok(info.stdout.includes(flag), flag);
    assert.doesNotMatch(info.stdout, /backend: \w+ \(/, 'help only: info did not run');
  });

  it('exit codes are in advsign --help and the README, and the CLI keeps them', async () => {
    const [usage, unknown, badFlag] = await Promise.all([runCli(['--help']), runCli(['nope']), runCli(['info', '--nope'])]);
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    for (const code of ['0', '1', '2', '75', '130']) {
      assert.match(usage.stdout, new RegExp(`^  ${code}\\s+\\S`, 'm'), `exit ${code} in --help`);
      assert.ok(readme.includes(`**${code}**`), `exit ${code} in README`);
    }
    assert.equal(unknown.code, 2);
    assert.equal(badFlag.code, 2);
    assert.match(badFlag.stderr, /^advsign: error: info: Unknown option '--nope'/m);
  });
});
