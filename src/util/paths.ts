/** Where the project's own files are, wherever the command is run from. */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The folder holding package.json (dist/src/util → ../../..). */
export function projectRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  return process.cwd();
}

export function version(): string {
  try {
    return (JSON.parse(fs.readFileSync(path.join(projectRoot(), 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** The shipped default model. */
export function defaultModelDir(): string {
  return path.join(projectRoot(), 'models', 'gtsrb-cnn');
}
