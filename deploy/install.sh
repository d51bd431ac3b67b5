#!/usr/bin/env bash
# advsign installer for Raspberry Pi OS (Bookworm, 64-bit) and NVIDIA Jetson (L4T on Ubuntu).
#
#   sudo deploy/install.sh              install or upgrade, enable and start the service
#   deploy/install.sh --dry-run         print every action instead of doing it (no root needed)
#   sudo deploy/install.sh --uninstall  remove the service and /opt/advsign (config, data and
#                                       the user stay unless --purge is given too)
#
# Every decision is printed first, then carried out, so a run's output is also its log.
# Overrides (tests, unusual systems):
#   ADVSIGN_OS_RELEASE=path        instead of /etc/os-release
#   ADVSIGN_DT_MODEL=path          instead of /proc/device-tree/model
#   ADVSIGN_NV_TEGRA_RELEASE=path  instead of /etc/nv_tegra_release
#   ADVSIGN_ARCH=name              instead of `uname -m`
#   ADVSIGN_PLATFORM=pi|jetson     skip detection (a similar Debian/Ubuntu arm64 board)
#   ADVSIGN_ROOT=dir               prefix for every path read or written (/opt, /etc, /var,
#                                  /etc/passwd and /etc/group lookups; useradd/systemctl get
#                                  --root); apt-get and npm still run on the host
#   ADVSIGN_NODE_BIN=path          the node binary to check (default: `command -v node`)
#   ADVSIGN_APT_NODE_CANDIDATE=v   the nodejs version apt would install (default: apt-cache)
set -euo pipefail

readonly NODE_MAJOR=20
readonly APP=advsign
readonly SERVICE_USER=advsign

ROOT=${ADVSIGN_ROOT:-}
ROOT=${ROOT%/}
PREFIX="$ROOT/opt/$APP"
CONFIG_DIR="$ROOT/etc/$APP"
CONFIG_FILE="$CONFIG_DIR/config.json"
STATE_DIR="$ROOT/var/lib/$APP"
UNIT_DIR="$ROOT/etc/systemd/system"
UNIT_FILE="$UNIT_DIR/$APP.service"
DROPIN_DIR="$UNIT_DIR/$APP.service.d"
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE_DIR=$(dirname "$SCRIPT_DIR")

DRY_RUN=0
UNINSTALL=0
PURGE=0
START=1
CSI_CAMERA=0

usage() {
  cat <<EOF
usage: install.sh [--dry-run] [--uninstall [--purge]] [--no-start] [--csi-camera] [--source DIR]

  --dry-run      print the plan (every command and file) and change nothing
  --uninstall    stop and remove the service and $PREFIX
  --purge        with --uninstall: also remove $CONFIG_DIR, $STATE_DIR and the $SERVICE_USER user
  --no-start     install and enable the service without starting it
  --csi-camera   feed the service from the board's CSI camera (rpicam-vid on a Pi,
                 GStreamer nvarguscamerasrc on a Jetson) through a systemd drop-in
  --source DIR   the advsign source tree to install (default: $SOURCE_DIR)
EOF
}

die() {
  printf 'install.sh: error: %s\n' "$*" >&2
  exit 1
}

note() {
  printf '%s\n' "$*"
}

# Prints a command as a shell could re-run it (words quoted only when needed), then runs it
# unless this is a dry run.
run() {
  local line="+" arg
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./=:,@%+-]+$ ]]; then
      line+=" $arg"
    else
      line+=" '${arg//\'/\'\\\'\'}'"
    fi
  done
  printf '%s\n' "$line"
  if [ "$DRY_RUN" -eq 0 ]; then
    "$@"
  fi
}

# Writes stdin to a file with a mode and owner; a dry run prints the content instead.
write_file() {
  local path=$1 mode=$2 owner=$3 content
  content=$(cat)
  printf '+ write %s (mode %s, owner %s)\n' "$path" "$mode" "$owner"
  if [ "$DRY_RUN" -eq 1 ]; then
    printf '%s\n' "$content" | sed 's/^/    | /'
    return
  fi
  local tmp="$path.tmp.$$"
  printf '%s\n' "$content" > "$tmp"
  chmod "$mode" "$tmp"
  if [ -z "$ROOT" ]; then
    chown "$owner" "$tmp"
  fi
  mv -f "$tmp" "$path"
}

while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --uninstall) UNINSTALL=1 ;;
    --purge) PURGE=1 ;;
    --no-start) START=0 ;;
    --csi-camera) CSI_CAMERA=1 ;;
    --source)
      [ $# -ge 2 ] || die "--source needs a folder"
      SOURCE_DIR=$2
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage >&2
      die "unknown option '$1'"
      ;;
  esac
  shift
done
if [ "$PURGE" -eq 1 ] && [ "$UNINSTALL" -eq 0 ]; then
  die "--purge only goes with --uninstall"
fi

# --- platform detection --------------------------------------------------------------------

OS_RELEASE=${ADVSIGN_OS_RELEASE:-/etc/os-release}
DT_MODEL_FILE=${ADVSIGN_DT_MODEL:-/proc/device-tree/model}
TEGRA_FILE=${ADVSIGN_NV_TEGRA_RELEASE:-/etc/nv_tegra_release}
ARCH=${ADVSIGN_ARCH:-$(uname -m)}

# One KEY from os-release, without sourcing the file (it is data, not a script).
os_field() {
  [ -r "$OS_RELEASE" ] || return 0
  sed -n "s/^$1=//p" "$OS_RELEASE" | head -n 1 | sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'$/\1/"
}

OS_ID=$(os_field ID)
OS_LIKE=$(os_field ID_LIKE)
OS_VERSION=$(os_field VERSION_ID)
OS_CODENAME=$(os_field VERSION_CODENAME)
OS_PRETTY=$(os_field PRETTY_NAME)
OS_PRETTY=${OS_PRETTY:-unknown OS}
DT_MODEL=""
if [ -r "$DT_MODEL_FILE" ]; then
  # The device-tree string ends in a NUL byte.
  DT_MODEL=$(tr -d '\0' < "$DT_MODEL_FILE")
fi
L4T=""
if [ -r "$TEGRA_FILE" ]; then
  # "# R35 (release), REVISION: 4.1, GCID: …" → R35.4.1
  L4T=$(sed -n 's/^# R\([0-9]*\) (release), REVISION: \([0-9.]*\).*/R\1.\2/p' "$TEGRA_FILE" | head -n 1)
  L4T=${L4T:-unknown}
fi

describe_system() {
  printf '%s on %s, %s' "$OS_PRETTY" "$ARCH" "${DT_MODEL:-no device-tree model}"
}

unsupported() {
  die "unsupported system ($(describe_system)): $1
Supported: Raspberry Pi OS Bookworm 64-bit (Pi 3/4/5, Zero 2 W) and NVIDIA Jetson with L4T R35+ (Ubuntu 20.04/22.04).
On a similar Debian/Ubuntu arm64 board, set ADVSIGN_PLATFORM=pi or ADVSIGN_PLATFORM=jetson to try anyway."
}

detect_platform() {
  if [ -n "${ADVSIGN_PLATFORM:-}" ]; then
    case $ADVSIGN_PLATFORM in
      pi | jetson) PLATFORM=$ADVSIGN_PLATFORM ;;
      *) die "ADVSIGN_PLATFORM must be pi or jetson, got '$ADVSIGN_PLATFORM'" ;;
    esac
    note "platform: $PLATFORM (forced by ADVSIGN_PLATFORM) — $(describe_system)"
    return
  fi
  case $ARCH in
    aarch64 | arm64) ;;
    armv6l | armv7l | armhf)
      unsupported "32-bit ARM userland found: install the 64-bit OS image (Node 20 and the model runtimes need arm64)."
      ;;
    *) unsupported "the $ARCH architecture is not one of the arm64 edge boards this installer sets up." ;;
  esac
  if [ -r "$TEGRA_FILE" ] || [[ $DT_MODEL == *"NVIDIA Jetson"* ]]; then
    [ "$OS_ID" = ubuntu ] || unsupported "a Jetson should run NVIDIA's Ubuntu-based L4T image (found ID=$OS_ID)."
    local major=${OS_VERSION%%.*}
    if [ -n "$major" ] && [ "$major" -lt 20 ]; then
      unsupported "L4T ${L4T:-?} is on Ubuntu $OS_VERSION: Node $NODE_MAJOR needs glibc 2.28 (Ubuntu 20.04, JetPack 5 or newer)."
    fi
    PLATFORM=jetson
    note "platform: jetson — ${DT_MODEL:-NVIDIA Jetson}, L4T ${L4T:-unknown}, $OS_PRETTY ($ARCH)"
    return
  fi
  if [[ $DT_MODEL == *"Raspberry Pi"* ]]; then
    case "$OS_ID $OS_LIKE" in
      *debian* | *raspbian*) ;;
      *) unsupported "a Raspberry Pi should run Raspberry Pi OS (Debian-based), found ID=$OS_ID." ;;
    esac
    [ "$OS_CODENAME" = bookworm ] || unsupported "Raspberry Pi OS ${OS_CODENAME:-?} found; this installer targets Bookworm (rpicam-apps, kernel 6.x)."
    PLATFORM=pi
    note "platform: pi — $DT_MODEL, $OS_PRETTY ($ARCH)"
    return
  fi
  unsupported "neither a Raspberry Pi nor a Jetson (no matching device-tree model or $TEGRA_FILE)."
}

# --- helpers ---------------------------------------------------------------------------------

group_exists() {
  if [ -n "$ROOT" ]; then
    grep -q "^$1:" "$ROOT/etc/group" 2>/dev/null
  else
    getent group "$1" > /dev/null
  fi
}

user_exists() {
  if [ -n "$ROOT" ]; then
    grep -q "^$1:" "$ROOT/etc/passwd" 2>/dev/null
  else
    id -u "$1" > /dev/null 2>&1
  fi
}

root_args=()
if [ -n "$ROOT" ]; then
  root_args=(--root "$ROOT")
fi

node_major() {
  local bin=${ADVSIGN_NODE_BIN:-$(command -v node || true)}
  if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo 0
    return
  fi
  local v
  v=$("$bin" --version 2>/dev/null || echo v0)
  v=${v#v}
  echo "${v%%.*}"
}

apt_node_candidate_major() {
  local v=${ADVSIGN_APT_NODE_CANDIDATE:-}
  if [ -z "$v" ] && command -v apt-cache > /dev/null; then
    v=$(apt-cache policy nodejs 2>/dev/null | sed -n 's/^ *Candidate: *//p' | head -n 1)
  fi
  v=${v#*:} # drop an epoch
  case $v in
    '' | '(none)') echo 0 ;;
    *) echo "${v%%.*}" ;;
  esac
}

require_root() {
  if [ "$DRY_RUN" -eq 0 ] && [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0), or see the plan first with --dry-run"
  fi
}

# --- install ---------------------------------------------------------------------------------

install_packages() {
  local pkgs=(ca-certificates curl gnupg ffmpeg v4l-utils build-essential python3)
  # build-essential and python3: node-gyp builds the `epoll` addon behind the GPIO library.
  if [ "$PLATFORM" = pi ]; then
    pkgs+=(rpicam-apps)
  else
    # nvarguscamerasrc itself comes with L4T (nvidia-l4t-gstreamer); these add gst-launch and jpegenc.
    pkgs+=(gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)
  fi
  note "step: system packages"
  run apt-get update
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}"
}

install_node() {
  local have
  have=$(node_major)
  if [ "$have" -ge "$NODE_MAJOR" ]; then
    note "step: Node.js — version $have found, nothing to do"
    return
  fi
  local candidate
  candidate=$(apt_node_candidate_major)
  if [ "$candidate" -ge "$NODE_MAJOR" ]; then
    note "step: Node.js $NODE_MAJOR from the distribution (apt candidate $candidate)"
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs
    return
  fi
  note "step: Node.js $NODE_MAJOR from the NodeSource apt repository (distribution offers ${candidate/#0/none})"
  run install -d -m 0755 "$ROOT/etc/apt/keyrings"
  note "+ curl -fsSL https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key | gpg --dearmor -o $ROOT/etc/apt/keyrings/nodesource.gpg"
  if [ "$DRY_RUN" -eq 0 ]; then
    curl -fsSL https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key | gpg --dearmor --yes -o "$ROOT/etc/apt/keyrings/nodesource.gpg"
  fi
  write_file "$ROOT/etc/apt/sources.list.d/nodesource.list" 0644 root:root <<EOF
deb [signed-by=/etc/apt/keyrings/nodesource.gpg] https://deb.nodesource.com/node_$NODE_MAJOR.x nodistro main
EOF
  run apt-get update
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs
}

create_user() {
  note "step: system user $SERVICE_USER (groups video, gpio)"
  local g
  for g in video gpio; do
    if ! group_exists "$g"; then
      # Pi OS has both; on a Jetson 'gpio' comes from NVIDIA's udev rules and may be missing.
      run groupadd "${root_args[@]}" --system "$g"
    fi
  done
  if user_exists "$SERVICE_USER"; then
    note "user $SERVICE_USER exists"
  else
    run useradd "${root_args[@]}" --system --user-group --home-dir /var/lib/$APP --no-create-home \
      --shell /usr/sbin/nologin --comment "advsign daemon" "$SERVICE_USER"
  fi
  run usermod "${root_args[@]}" --append --groups video,gpio "$SERVICE_USER"
}

install_app() {
  [ -f "$SOURCE_DIR/package.json" ] || die "no package.json in $SOURCE_DIR (give the advsign source with --source DIR)"
  [ -f "$SOURCE_DIR/package-lock.json" ] || die "no package-lock.json in $SOURCE_DIR: npm ci needs it"
  local stage="$PREFIX.new" old="$PREFIX.old"
  note "step: application into $PREFIX (staged in $stage, swapped in when complete)"
  run rm -rf "$stage" "$old"
  run install -d -m 0755 "$stage"
  # Sources only: dependencies and the compiled output are rebuilt for this machine.
  note "+ tar -C $SOURCE_DIR --exclude=./node_modules --exclude=./dist --exclude=./.git --exclude=./scratch -cf - . | tar -C $stage -xf -"
  if [ "$DRY_RUN" -eq 0 ]; then
    tar -C "$SOURCE_DIR" --exclude=./node_modules --exclude=./dist --exclude=./.git --exclude=./scratch \
      --exclude=./.cache --exclude=./checkpoints --exclude='*.log' -cf - . | tar -C "$stage" -xf -
  fi
  # --omit=dev still installs typescript and the type packages src/ needs (regular dependencies):
  # the `prepare` script compiles src/ alone (tsconfig.build.json, no tests) into dist/ during `npm ci`. Optional dependencies stay: sharp and the canvas ship their
  # arm64 binaries as optional packages (tfjs-node has no arm64 build and is skipped by npm).
  note "+ (cd $stage && npm ci --omit=dev --no-audit --no-fund)"
  if [ "$DRY_RUN" -eq 0 ]; then
    (cd "$stage" && npm ci --omit=dev --no-audit --no-fund)
  fi
  run test -f "$stage/dist/src/cli/index.js"
  run chown -R root:root "$stage"
  if [ -d "$PREFIX" ]; then
    run mv -T "$PREFIX" "$old"
  fi
  run mv -T "$stage" "$PREFIX"
  run rm -rf "$old"
}

write_config() {
  note "step: configuration $CONFIG_FILE"
  run install -d -m 0755 "$CONFIG_DIR"
  if [ -n "$ROOT" ]; then
    # Names cannot be resolved against a staging root: systemd's StateDirectory= fixes the owner.
    run install -d -m 0750 "$STATE_DIR" "$STATE_DIR/snapshots"
  else
    run install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATE_DIR" "$STATE_DIR/snapshots"
  fi
  if [ -f "$CONFIG_FILE" ]; then
    note "keeping the existing $CONFIG_FILE"
    return
  fi
  local token='<generated at install>'
  if [ "$DRY_RUN" -eq 0 ]; then
    token=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
  fi
  # The example with a fresh access token: the page is reachable from the network (host 0.0.0.0).
  sed "s|\"token\": null|\"token\": \"$token\"|" "$SOURCE_DIR/deploy/config.example.json" |
    write_file "$CONFIG_FILE" 0640 "root:$SERVICE_USER"
}

csi_pipeline() {
  local serve="$1"
  if [ "$PLATFORM" = pi ]; then
    printf '%s' "rpicam-vid -t 0 -n --codec mjpeg --width 640 --height 480 --framerate 30 -o - | $serve --source ffmpeg:-"
  else
    printf '%s' "gst-launch-1.0 -q nvarguscamerasrc ! 'video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1' ! nvvidconv ! 'video/x-raw,width=640,height=480' ! jpegenc ! fdsink fd=1 | $serve --source ffmpeg:-"
  fi
}

install_service() {
  note "step: systemd service $UNIT_FILE"
  local node_bin
  node_bin=${ADVSIGN_NODE_BIN:-$(command -v node || echo /usr/bin/node)}
  [ -x "$node_bin" ] || node_bin=/usr/bin/node
  run install -d -m 0755 "$UNIT_DIR"
  # The shipped unit names /usr/bin/node (NodeSource and distro packages); adjust if elsewhere.
  sed "s|/usr/bin/node|$node_bin|g" "$SOURCE_DIR/deploy/advsign.service" | write_file "$UNIT_FILE" 0644 root:root
  if [ "$CSI_CAMERA" -eq 1 ]; then
    run install -d -m 0755 "$DROPIN_DIR"
    local extra=""
    if [ "$PLATFORM" = jetson ]; then
      # Argus clients reach nvargus-daemon through /tmp/argus_socket: a private /tmp hides it.
      extra="PrivateTmp=no"
    fi
    write_file "$DROPIN_DIR/camera.conf" 0644 root:root <<EOF
# Written by install.sh --csi-camera: the CSI camera's MJPEG stream piped into advsign.
# The pipeline exits with advsign's status, so Restart=on-failure still applies.
[Service]
ExecStart=
ExecStart=/bin/sh -c "$(csi_pipeline "$node_bin /opt/$APP/bin/advsign.js serve --config /etc/$APP/config.json")"
$extra
EOF
  fi
  if [ -n "$ROOT" ]; then
    run systemctl --root="$ROOT" enable "$APP.service"
    note "staging root: the service is enabled in $ROOT but not started"
    return
  fi
  run systemctl daemon-reload
  run systemctl enable "$APP.service"
  if [ "$START" -eq 1 ]; then
    run systemctl restart "$APP.service"
  fi
}

# --- uninstall -------------------------------------------------------------------------------

uninstall() {
  note "step: remove the service and $PREFIX"
  if [ -n "$ROOT" ]; then
    run systemctl --root="$ROOT" disable "$APP.service" || true
  else
    run systemctl disable --now "$APP.service" || true
  fi
  run rm -f "$UNIT_FILE"
  run rm -rf "$DROPIN_DIR" "$PREFIX" "$PREFIX.new" "$PREFIX.old"
  if [ -z "$ROOT" ]; then
    run systemctl daemon-reload
  fi
  if [ "$PURGE" -eq 1 ]; then
    note "step: purge configuration, data and the $SERVICE_USER user"
    run rm -rf "$CONFIG_DIR" "$STATE_DIR"
    if user_exists "$SERVICE_USER"; then
      run userdel "${root_args[@]}" "$SERVICE_USER"
    fi
  else
    note "kept $CONFIG_DIR, $STATE_DIR and the $SERVICE_USER user (--purge removes them)"
  fi
  note "Node.js, ffmpeg and the camera tools stay installed (remove them with apt if unwanted)"
}

# --- main ------------------------------------------------------------------------------------

if [ "$DRY_RUN" -eq 1 ]; then
  note "DRY RUN: nothing will be changed; every action is printed."
fi
detect_platform
require_root
if [ "$UNINSTALL" -eq 1 ]; then
  uninstall
  note "advsign uninstalled."
  exit 0
fi
install_packages
install_node
create_user
install_app
write_config
install_service
note "GPIO: BCM numbers in the config; on Pi OS kernels >= 6.6 the sysfs numbers are offset (BCM17 = 529 on a Pi 4, 588 on a Pi 5) and advsign derives them from /sys/class/gpio."
if [ "$DRY_RUN" -eq 1 ]; then
  note "DRY RUN complete: nothing was changed."
else
  note "advsign installed: journalctl -u $APP -f shows the log; the page is on port 8080 (token in $CONFIG_FILE)."
fi
