# shellcheck shell=bash
# Sourced by the test scripts: a temporary folder `$work` (removed on exit; KEEP=1 keeps it), a
# background process `$daemon_pid` stopped on exit, and fail(). Set `name` before sourcing.
work=$(mktemp -d "${TMPDIR:-/tmp}/advsign-${name:?}-XXXXXX")
daemon_pid=""
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  if [ -n "$daemon_pid" ]; then kill "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
fail() { echo "test-$name: FAIL: $*" >&2; exit 1; }
