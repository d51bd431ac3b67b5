#!/usr/bin/env node
'use strict';
/**
 * Host-side helpers of scripts/test-arm64.sh (run with this machine's node, against this
 * checkout's build):
 *   sign OUT.png              a synthetic Stop sign photo (48×48) to attack
 *   compare X.json A.json X.png A.png   same clean and adversarial prediction, pixels within 1/255
 *   frames PORT N             connects a socket.io client and waits for N frames (prints the last)
 */
const path = require('node:path');
const fs = require('node:fs');

const root = path.join(__dirname, '..');
const dist = (p) => require(path.join(root, 'dist', 'src', p));
const fail = (msg) => {
  process.stderr.write(`arm64-tools: ${msg}\n`);
  process.exit(1);
};

async function sign(out) {
  const { renderSign } = dist('data/synthetic');
  const { encodePng } = dist('data/image-io');
  const data = renderSign(14, { size: 48, seed: 7, augment: true });
  fs.writeFileSync(out, await encodePng({ data, width: 48, height: 48 }));
}

async function compare(jsonA, jsonB, pngA, pngB) {
  const sharp = require(path.join(root, 'node_modules', 'sharp'));
  const [a, b] = [jsonA, jsonB].map((f) => JSON.parse(fs.readFileSync(f, 'utf8')));
  for (const k of ['clean', 'adversarial']) {
    if (a[k][0].classId !== b[k][0].classId) fail(`${k} prediction differs: ${a[k][0].classId} (x86) vs ${b[k][0].classId} (arm64)`);
  }
  // An unchanged image would make the comparison meaningless.
  if (!(a.linf >= 1 / 255 && b.linf >= 1 / 255)) fail(`no perturbation to compare (Linf ${a.linf} on x86, ${b.linf} on arm64)`);
  const [pa, pb] = await Promise.all([pngA, pngB].map((f) => sharp(f).raw().toBuffer()));
  if (pa.length !== pb.length) fail(`image sizes differ: ${pa.length} vs ${pb.length} bytes`);
  let worst = 0;
  for (let i = 0; i < pa.length; i++) worst = Math.max(worst, Math.abs(pa[i] - pb[i]));
  if (worst > 1) fail(`adversarial images differ by ${worst}/255 somewhere (allowed 1/255)`);
  console.log(
    `same prediction (clean ${a.clean[0].classId}, adversarial ${a.adversarial[0].classId}), ` +
      `perturbations within ${worst}/255, Linf ${(a.linf * 255).toFixed(2)}/255 (x86) vs ${(b.linf * 255).toFixed(2)}/255 (arm64)`,
  );
}

function frames(port, n) {
  const { io } = require(path.join(root, 'node_modules', 'socket.io-client'));
  const socket = io(`http://127.0.0.1:${port}`, { transports: ['websocket'], reconnection: false });
  let count = 0;
  const timer = setTimeout(() => fail(`only ${count} of ${n} frames within 300 s`), 300000);
  socket.on('connect_error', (e) => fail(`socket.io: ${e.message}`));
  socket.on('frame', (f, ack) => {
    count++;
    if (typeof ack === 'function') ack();
    if (count >= n) {
      clearTimeout(timer);
      console.log(
        `${count} frames; last: clean ${f.clean.classId} ${f.clean.name}, adversarial ${f.adversarial.classId}, ` +
          `fooled ${f.fooled}, total latency ${Math.round(f.latency.total)} ms`,
      );
      socket.close();
    }
  });
}

const [cmd, ...args] = process.argv.slice(2);
const run = { sign: () => sign(args[0]), compare: () => compare(...args), frames: () => frames(Number(args[0]), Number(args[1])) }[cmd];
if (!run) fail(`unknown command '${cmd}'`);
Promise.resolve(run()).catch((e) => fail((e && e.stack) || String(e)));
