/**
 * Every output advsign writes (PDFs, PNGs, JSON and HTML reports, .tflite files, model folders,
 * snapshots) goes through here, so that a full disk, a crash or a SIGKILL leaves either the old
 * file or the new one, whole, never a truncated mix:
 *
 * - data is written under a temporary name in the same folder (`.NAME.tmp-PID-RAND`), fsynced,
 *   then renamed over the target (rename is atomic within a file system) and the folder fsynced;
 * - a model folder is filled under `.NAME.saving-PID-RAND`, and swapped in by two renames;
 * - temporaries of runs that died (their PID is gone) are removed by the next write into the same
 *   folder; a swap interrupted between its two renames is undone (the old folder is put back);
 * - outputs are checked before any slow work (`checkWritable`), and file-system errors become
 *   one-line user errors ("no space left on device"), never "internal error: ENOSPC".
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from './errors';

const FILE_TEMP = /^\.(.+)\.tmp-(\d+)-[0-9a-f]{8}$/;
const DIR_TEMP = /^\.(.+)\.saving-(\d+)-[0-9a-f]{8}(\.old)?$/;
/** What earlier versions left (export, model cards): `NAME.tflite.tmp-PID`, `card.json.tmp-PID`. */
const LEGACY_FILE_TEMP = /^(.+\.(?:tflite|json))\.tmp-(\d+)$/;

function tempPath(target: string, kind: 'tmp' | 'saving'): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${kind}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // someone else's process: alive
  }
}

/** A file-system error as a one-line user error, when it is one (else the error itself). */
export function fileError(e: unknown, file: string): unknown {
  const code = (e as NodeJS.ErrnoException).code;
  const why: Record<string, string> = {
    EACCES: 'permission denied',
    EPERM: 'permission denied',
    EROFS: 'read-only file system',
    ENOSPC: 'no space left on device',
    EDQUOT: 'disk quota exceeded',
    EFBIG: 'file too large (file system limit or ulimit -f)',
    ENOTDIR: 'a parent is not a folder',
    ENOENT: 'its folder does not exist',
    EISDIR: 'it is a folder',
    ENAMETOOLONG: 'name too long',
  };
  return code && why[code] ? new UserError(`cannot write ${file}: ${why[code]}`) : e;
}

/**
 * Removes what killed advsign runs left in `dir` (best effort: a folder we cannot write is left
 * alone). A model folder moved aside by an interrupted swap is moved back first.
 */
export function removeStaleTemps(dir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  const stale = (pid: string) => !alive(Number(pid));
  // Old folders first: where the swap was cut between its renames, the old model comes back.
  for (const name of names.filter((n) => n.endsWith('.old'))) {
    const m = DIR_TEMP.exec(name);
    if (!m || !stale(m[2])) continue;
    const target = path.join(dir, m[1]);
    try {
      if (!fs.existsSync(target)) fs.renameSync(path.join(dir, name), target);
      else fs.rmSync(path.join(dir, name), { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
  for (const name of names) {
    const m = FILE_TEMP.exec(name) ?? DIR_TEMP.exec(name) ?? LEGACY_FILE_TEMP.exec(name);
    if (!m || name.endsWith('.old') || !stale(m[2])) continue;
    try {
      fs.rmSync(path.join(dir, name), { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
}

function fsyncPath(p: string): void {
  let fd: number | null = null;
  try {
    fd = fs.openSync(p, 'r');
    fs.fsyncSync(fd);
  } catch {
    /* some file systems refuse fsync on folders; the rename is still atomic */
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
}

/** The file a path really names (a symlinked output is written where the link points). */
function realTarget(file: string): string {
  const abs = path.resolve(file);
  try {
    return fs.realpathSync(abs);
  } catch {
    return abs;
  }
}

function writeTemp(target: string, data: string | Uint8Array): string {
  const tmp = tempPath(target, 'tmp');
  const fd = fs.openSync(tmp, 'wx', 0o666);
  try {
    // A replaced file keeps its permissions (a private 0600 report stays private).
    const old = fs.statSync(target, { throwIfNoEntry: false });
    if (old) fs.fchmodSync(fd, old.mode & 0o7777);
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    for (let off = 0; off < buf.length;) off += fs.writeSync(fd, buf, off, buf.length - off);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  return tmp;
}

export interface OutputFile {
  path: string;
  data: string | Uint8Array;
}

/**
 * Writes files that belong together (a PDF, its PNGs and JSON): all are written and fsynced under
 * temporary names first, then renamed into place, so a failure while writing any of them
 * changes none.
 */
export function writeFilesAtomic(files: OutputFile[]): void {
  const targets = files.map((f) => realTarget(f.path));
  for (const dir of new Set(targets.map((t) => path.dirname(t)))) {
    try {
      fs.mkdirSync(dir, { recursive: true });
    } catch (e) {
      throw fileError(e, dir);
    }
    removeStaleTemps(dir);
  }
  const temps: string[] = [];
  try {
    for (const [i, f] of files.entries()) {
      try {
        temps.push(writeTemp(targets[i], f.data));
      } catch (e) {
        throw fileError(e, f.path);
      }
    }
  } catch (e) {
    for (const t of temps) fs.rmSync(t, { force: true });
    throw e;
  }
  temps.forEach((t, i) => fs.renameSync(t, targets[i]));
  for (const dir of new Set(targets.map((t) => path.dirname(t)))) fsyncPath(dir);
}

export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  writeFilesAtomic([{ path: file, data }]);
}

/**
 * Replaces the folder `dir` by one that `fill` writes into (a model: model.json, weights.bin,
 * card.json). The new folder is complete and fsynced before the old one moves aside.
 */
export async function replaceDirAtomic(dir: string, fill: (staging: string) => Promise<void> | void): Promise<void> {
  const target = path.resolve(dir);
  const parent = path.dirname(target);
  try {
    fs.mkdirSync(parent, { recursive: true });
  } catch (e) {
    throw fileError(e, parent);
  }
  removeStaleTemps(parent);
  const staging = tempPath(target, 'saving');
  try {
    fs.mkdirSync(staging, { mode: 0o755 });
    await fill(staging);
    for (const name of fs.readdirSync(staging)) fsyncPath(path.join(staging, name));
    fsyncPath(staging);
  } catch (e) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw fileError(e, dir);
  }
  const old = `${staging}.old`;
  if (fs.existsSync(target)) fs.renameSync(target, old);
  fs.renameSync(staging, target);
  fsyncPath(parent);
  fs.rmSync(old, { recursive: true, force: true });
}

/** Puts back a folder whose replacement was interrupted between its two renames (a read finds it missing). */
export function recoverDir(dir: string): void {
  const target = path.resolve(dir);
  if (!fs.existsSync(target)) removeStaleTemps(path.dirname(target));
}

/** checkWritable for each output given; '-' (stdout) and absent ones are skipped. */
export function checkOutputs(...files: (string | undefined)[]): void {
  for (const f of files) if (f && f !== '-') checkWritable(f);
}

/** The nearest folder of `p` that exists (where a missing output folder would be created). */
function existingAncestor(p: string): string {
  let d = p;
  while (!fs.existsSync(d) && path.dirname(d) !== d) d = path.dirname(d);
  return d;
}

/**
 * Fails now, in one line, if `file` cannot be written later: it is a folder or a device, or its
 * folder (or the nearest existing parent, for one to be created) refuses a new file. Checked by
 * creating and removing a temporary file there: permission bits do not tell (root, read-only
 * mounts, /sys).
 */
export function checkWritable(file: string, kind: 'file' | 'folder' = 'file'): void {
  const target = realTarget(file);
  const st = fs.statSync(target, { throwIfNoEntry: false });
  if (st && kind === 'file' && st.isDirectory()) throw new UserError(`cannot write ${file}: it is a folder`);
  if (st && kind === 'file' && !st.isFile()) throw new UserError(`cannot write ${file}: not a regular file`);
  if (st && kind === 'folder' && !st.isDirectory()) throw new UserError(`cannot write ${file}: it exists and is not a folder`);
  const dir = existingAncestor(path.dirname(target));
  if (!fs.statSync(dir).isDirectory()) throw new UserError(`cannot write ${file}: ${dir} is not a folder`);
  const probe = tempPath(path.join(dir, path.basename(target)), 'tmp');
  try {
    fs.closeSync(fs.openSync(probe, 'wx'));
  } catch (e) {
    // ENOENT in a folder that exists: a pseudo file system (/proc) that takes no new files.
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new UserError(`cannot write ${file}: ${dir} takes no new files`);
    throw fileError(e, file);
  }
  fs.rmSync(probe, { force: true });
}
