#!/usr/bin/env bash
# The board install, for real (not a dry run), on this machine: from a clean clone of this
# repository (its committed state), deploy/install.sh installs into a temporary root with
# stand-ins for the commands that would change the host (apt-get, systemctl, useradd, groupadd,
# usermod, chown). Its `npm ci --omit=dev` builds the app without any dev dependency. Then the
# installed unit's ExecStart (paths moved into the root) starts the daemon, which must answer
# /healthz, and `require('advsign')` must resolve through the installed package's exports.
#
#   npm run test:install          (about a minute: npm ci of the production dependencies)
#   KEEP=1 npm run test:install   keep the temporary folder for inspection
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
name=install
# shellcheck source=scripts/lib.sh
source "$repo/scripts/lib.sh"

echo "== clean clone of $repo"
git clone --quiet "$repo" "$work/src"

# Stand-ins: record every call; the account tools write the staging root's passwd/group.
mkdir -p "$work/bin" "$work/root/etc"
printf 'root:x:0:0::/root:/bin/bash\n' > "$work/root/etc/passwd"
printf 'root:x:0:\nvideo:x:44:\n' > "$work/root/etc/group"
for cmd in apt-get systemctl useradd groupadd usermod chown; do
  cat > "$work/bin/$cmd" <<EOF
#!/usr/bin/env bash
printf '%s %s\n' "$cmd" "\$*" >> "$work/calls.log"
root=$work/root
name=\${@: -1}
case $cmd in
  groupadd) printf '%s:x:990:\n' "\$name" >> "\$root/etc/group" ;;
  useradd) printf '%s:x:990:990::/var/lib/%s:/usr/sbin/nologin\n' "\$name" "\$name" >> "\$root/etc/passwd" ;;
esac
exit 0
EOF
  chmod +x "$work/bin/$cmd"
done

echo "== deploy/install.sh into $work/root"
PATH="$work/bin:$PATH" ADVSIGN_ROOT="$work/root" ADVSIGN_PLATFORM=pi ADVSIGN_NODE_BIN="$(command -v node)" \
  bash "$work/src/deploy/install.sh" --source "$work/src" | tee "$work/install.log"

prefix="$work/root/opt/advsign"
[ -f "$prefix/dist/src/cli/index.js" ] || fail "no compiled CLI in $prefix"
[ ! -d "$prefix/node_modules/mocha" ] || fail "a dev dependency (mocha) was installed"
[ ! -d "$prefix/dist/test" ] || fail "the production build compiled the tests"
grep -q '^systemctl --root=.* enable advsign.service' "$work/calls.log" || fail "the service was not enabled"
grep -q '^useradd .*advsign' "$work/calls.log" || fail "the service user was not created"
node -e "const a = require(process.argv[1]); if (typeof a.loadModel !== 'function' || typeof a.main !== 'function') process.exit(1)" "$prefix" \
  || fail "require('advsign') does not resolve to the library through package.json main/exports"

# The unit's command, with its absolute paths moved into the staging root.
unit="$work/root/etc/systemd/system/advsign.service"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
[ -n "$exec_start" ] || fail "no ExecStart in $unit"
read -r -a argv <<< "${exec_start//\/opt\//$work/root/opt/}"
argv=("${argv[@]//\/etc\/advsign/$work/root/etc/advsign}")
port=$(node -e "const s = require('net').createServer().listen(0, () => { console.log(s.address().port); s.close(); })")
echo "== starting the installed daemon: ${argv[*]} (port $port)"
ADVSIGN_MODEL="$prefix/models/gtsrb-cnn" ADVSIGN_SNAPSHOT_DIR="$work/root/var/lib/advsign/snapshots" \
  "${argv[@]}" --host 127.0.0.1 --port "$port" --source synthetic --gpio-button none --gpio-led-ok none --gpio-led-fooled none \
  > "$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 120); do
  if body=$(node -e "fetch('http://127.0.0.1:' + process.argv[1] + '/healthz').then(async (r) => { if (!r.ok) process.exit(1); console.log(await r.text()); }, () => process.exit(1))" "$port" 2>/dev/null); then
    echo "/healthz: $body"
    case $body in *'"ok":true'*) echo "test-install: OK"; exit 0 ;; esac
  fi
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/daemon.log" >&2; fail "the installed daemon exited"; }
  sleep 1
done
cat "$work/daemon.log" >&2
fail "the installed daemon did not answer /healthz within 120 s"
