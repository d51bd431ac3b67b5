/**
 * Loaded with `node --require` into an advsign process under test: the first write to a file
 * whose path matches ADVSIGN_FAULT_WRITE (a regular expression) writes only half of its data,
 * says so on stderr, and then hangs, so the test can SIGKILL the process at exactly that moment
 * (a crash mid-write). Covers fs.writeFileSync (writing in place) and fs.writeSync on a file
 * opened with fs.openSync (writing through a descriptor).
 */
import fs = require('node:fs'); // the module object itself, whose functions can be replaced

const pattern = process.env.ADVSIGN_FAULT_WRITE ? new RegExp(process.env.ADVSIGN_FAULT_WRITE) : null;

if (pattern) {
  const openSync = fs.openSync;
  const writeSync = fs.writeSync;
  const writeFileSync = fs.writeFileSync;
  const paths = new Map<number, string>();
  let fired = false;

  const hang = (file: string, fd: number, data: Uint8Array): never => {
    fired = true;
    writeSync(fd, data, 0, Math.floor(data.length / 2));
    fs.fsyncSync(fd);
    writeSync(2, `advsign-fault: stopped half-way through ${file}\n`);
    const cell = new Int32Array(new SharedArrayBuffer(4));
    for (;;) Atomics.wait(cell, 0, 0, 60_000);
  };

  const patched = fs as unknown as Record<string, unknown>;
  patched.openSync = (p: fs.PathLike, ...rest: unknown[]): number => {
    const fd = (openSync as (...a: unknown[]) => number)(p, ...rest);
    paths.set(fd, String(p));
    return fd;
  };
  patched.writeSync = (fd: number, data: unknown, ...rest: unknown[]): number => {
    const file = paths.get(fd);
    if (!fired && file && pattern.test(file) && data instanceof Uint8Array && data.length > 1) hang(file, fd, data);
    return (writeSync as (...a: unknown[]) => number)(fd, data, ...rest);
  };
  patched.writeFileSync = (file: fs.PathOrFileDescriptor, data: string | NodeJS.ArrayBufferView, ...rest: unknown[]): void => {
    if (!fired && typeof file !== 'number' && pattern.test(String(file))) {
      const bytes = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      hang(String(file), openSync(file, 'w'), bytes);
    }
    (writeFileSync as (...a: unknown[]) => void)(file, data, ...rest);
  };
}
