/**
 * deploy/install.sh decisions, checked through --dry-run with fake detection files (os-release,
 * device-tree model, nv_tegra_release) and a fake root for user/group lookups: the printed plan
 * is the contract. Nothing is installed on this machine.
 */
import * as assert from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadConfig } from '../src/server/config';
import { ROOT, tempDir } from './helpers';

const SCRIPT = path.join(ROOT, 'deploy', 'install.sh');

const PI_OS = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
`;
const UBUNTU_2004 = `NAME="Ubuntu"
VERSION="20.04.6 LTS (Focal Fossa)"
ID=ubuntu
ID_LIKE=debian
PRETTY_NAME="Ubuntu 20.04.6 LTS"
VERSION_ID="20.04"
VERSION_CODENAME=focal
`;
const UBUNTU_1804 = UBUNTU_2004.replace(/20\.04(\.6)?/g, '18.04').replace(/focal/g, 'bionic');
const FEDORA = `NAME="Fedora Linux"
VERSION="40 (Workstation Edition)"
ID=fedora
VERSION_ID=40
PRETTY_NAME="Fedora Linux 40 (Workstation Edition)"
`;

interface Fake {
  osRelease: string;
  model?: string;
  tegra?: string;
  arch: string;
  groups?: string[];
  users?: string[];
  env?: Record<string, string>;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  root: string;
}

const created: string[] = [];

function install(fake: Fake, args: string[] = ['--dry-run']): Run {
  const dir = tempDir('advsign-deploy-');
  created.push(dir);
  const root = path.join(dir, 'root');
  fs.mkdirSync(path.join(root, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(root, 'etc', 'group'), (fake.groups ?? ['root', 'video', 'gpio']).map((g, i) => `${g}:x:${i === 0 ? 0 : 900 + i}:\n`).join(''));
  fs.writeFileSync(
    path.join(root, 'etc', 'passwd'),
    ['root:x:0:0::/root:/bin/bash', ...(fake.users ?? []).map((u) => `${u}:x:999:999::/var/lib/${u}:/usr/sbin/nologin`)].join('\n') + '\n',
  );
  fs.writeFileSync(path.join(dir, 'os-release'), fake.osRelease);
  // Device-tree strings end in a NUL byte, like the real file.
  if (fake.model) fs.writeFileSync(path.join(dir, 'model'), fake.model + '\0');
  if (fake.tegra) fs.writeFileSync(path.join(dir, 'nv_tegra_release'), fake.tegra);
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: dir,
    ADVSIGN_OS_RELEASE: path.join(dir, 'os-release'),
    ADVSIGN_DT_MODEL: path.join(dir, 'model'),
    ADVSIGN_NV_TEGRA_RELEASE: path.join(dir, 'nv_tegra_release'),
    ADVSIGN_ARCH: fake.arch,
    ADVSIGN_ROOT: root,
    // A machine without Node whose apt only offers Node 18 (Debian Bookworm's own package).
    ADVSIGN_NODE_BIN: path.join(dir, 'no-node'),
    ADVSIGN_APT_NODE_CANDIDATE: '18.19.0+dfsg-6~deb12u2',
    ...fake.env,
  };
  const r = spawnSync('bash', [SCRIPT, ...args], { env, encoding: 'utf8', timeout: 20000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, root };
}

const PI5 = { osRelease: PI_OS, model: 'Raspberry Pi 5 Model B Rev 1.0', arch: 'aarch64' };
const JETSON = {
  osRelease: UBUNTU_2004,
  model: 'NVIDIA Jetson Xavier NX Developer Kit',
  arch: 'aarch64',
  tegra: '# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023\n',
};

function assertLines(out: string, patterns: RegExp[]): void {
  for (const p of patterns) assert.match(out, p);
}

describe('deploy/install.sh --dry-run', function () {
  this.timeout(60000);
  after(() => {
    for (const d of created.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it('plans a full install on Raspberry Pi OS Bookworm arm64', () => {
    const r = install(PI5);
    assert.strictEqual(r.code, 0, r.stderr);
    const o = r.stdout;
    const R = r.root.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    assertLines(o, [
      /^DRY RUN: nothing will be changed/m,
      /^platform: pi — Raspberry Pi 5 Model B Rev 1\.0, Debian GNU\/Linux 12 \(bookworm\) \(aarch64\)$/m,
      /^\+ env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends .*\bffmpeg v4l-utils\b.*\brpicam-apps$/m,
      /^step: Node\.js 20 from the NodeSource apt repository \(distribution offers 18\)$/m,
      /\| deb \[signed-by=\/etc\/apt\/keyrings\/nodesource\.gpg\] https:\/\/deb\.nodesource\.com\/node_20\.x nodistro main/,
      /^\+ env DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs$/m,
      new RegExp(`^\\+ useradd --root ${R} --system --user-group .*--shell /usr/sbin/nologin .*advsign$`, 'm'),
      new RegExp(`^\\+ usermod --root ${R} --append --groups video,gpio advsign$`, 'm'),
      new RegExp(`^\\+ \\(cd ${R}/opt/advsign\\.new && npm ci --omit=dev --no-audit --no-fund\\)$`, 'm'),
      new RegExp(`^\\+ mv -T ${R}/opt/advsign\\.new ${R}/opt/advsign$`, 'm'),
      new RegExp(`^\\+ write ${R}/etc/advsign/config\\.json \\(mode 0640, owner root:advsign\\)$`, 'm'),
      /\| {3}"token": "<generated at install>",/,
      new RegExp(`^\\+ write ${R}/etc/systemd/system/advsign\\.service \\(mode 0644, owner root:root\\)$`, 'm'),
      /\| ExecStart=\/usr\/bin\/node \/opt\/advsign\/bin\/advsign\.js serve --config \/etc\/advsign\/config\.json$/m,
      new RegExp(`^\\+ systemctl --root=${R} enable advsign\\.service$`, 'm'),
      /sysfs numbers are offset \(BCM17 = 529 on a Pi 4, 588 on a Pi 5\)/,
      /^DRY RUN complete: nothing was changed\.$/m,
    ]);
    assert.doesNotMatch(o, /gstreamer|groupadd/, 'no Jetson packages; video and gpio exist on Pi OS');
    // Steps come in a sensible order.
    const at = (s: string) => o.indexOf(s);
    assert.ok(
      at('step: system packages') < at('step: Node.js') &&
        at('step: Node.js') < at('step: system user') &&
        at('step: system user') < at('step: application') &&
        at('step: application') < at('step: configuration') &&
        at('step: configuration') < at('step: systemd service'),
    );
    assert.deepStrictEqual(fs.readdirSync(r.root).sort(), ['etc'], 'a dry run creates nothing');
    assert.deepStrictEqual(fs.readdirSync(path.join(r.root, 'etc')).sort(), ['group', 'passwd']);
  });

  it('keeps a present Node ≥ 20, or takes the distribution one when apt offers ≥ 20', () => {
    const have = install({ ...PI5, env: { ADVSIGN_NODE_BIN: process.execPath } });
    assert.strictEqual(have.code, 0, have.stderr);
    assert.match(have.stdout, /^step: Node\.js — version \d+ found, nothing to do$/m);
    assert.doesNotMatch(have.stdout, /nodesource/);
    assert.match(
      have.stdout,
      new RegExp(`ExecStart=${process.execPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} /opt/advsign/bin/advsign.js`),
      'the unit names the node that is there',
    );
    const distro = install({ ...PI5, env: { ADVSIGN_APT_NODE_CANDIDATE: '20.19.2+dfsg-1' } });
    assert.strictEqual(distro.code, 0, distro.stderr);
    assert.match(distro.stdout, /^step: Node\.js 20 from the distribution \(apt candidate 20\)$/m);
    assert.doesNotMatch(distro.stdout, /nodesource/);
  });

  it('leaves an existing user and config alone on upgrade', () => {
    const r = install({ ...PI5, users: ['advsign'] });
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(r.stdout, /^user advsign exists$/m);
    assert.doesNotMatch(r.stdout, /useradd/);
    fs.mkdirSync(path.join(r.root, 'etc', 'advsign'), { recursive: true });
    fs.writeFileSync(path.join(r.root, 'etc', 'advsign', 'config.json'), '{}');
    // Same fake root again, now with a config in place.
    const again = spawnSync('bash', [SCRIPT, '--dry-run'], {
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        ADVSIGN_ROOT: r.root,
        ADVSIGN_PLATFORM: 'pi',
        ADVSIGN_NODE_BIN: process.execPath,
        ADVSIGN_OS_RELEASE: '/nonexistent',
        ADVSIGN_DT_MODEL: '/nonexistent',
        ADVSIGN_NV_TEGRA_RELEASE: '/nonexistent',
      },
    });
    assert.strictEqual(again.status, 0, again.stderr);
    assert.match(again.stdout, /^platform: pi \(forced by ADVSIGN_PLATFORM\)/m);
    assert.match(again.stdout, /^keeping the existing .*\/etc\/advsign\/config\.json$/m);
    assert.doesNotMatch(again.stdout, /write .*config\.json/);
  });

  it('plans a Jetson (L4T R35, Ubuntu 20.04) install with GStreamer and the CSI camera', () => {
    const r = install({ ...JETSON, groups: ['root', 'video'] }, ['--dry-run', '--csi-camera']);
    assert.strictEqual(r.code, 0, r.stderr);
    const o = r.stdout;
    assertLines(o, [
      /^platform: jetson — NVIDIA Jetson Xavier NX Developer Kit, L4T R35\.4\.1, Ubuntu 20\.04\.6 LTS \(aarch64\)$/m,
      /apt-get install -y --no-install-recommends .*\bffmpeg v4l-utils\b.* gstreamer1\.0-tools gstreamer1\.0-plugins-base gstreamer1\.0-plugins-good gstreamer1\.0-plugins-bad$/m,
      /^\+ groupadd --root \S+ --system gpio$/m,
      /^\+ usermod --root \S+ --append --groups video,gpio advsign$/m,
      /advsign\.service\.d\/camera\.conf/,
      /\| ExecStart=\/bin\/sh -c "gst-launch-1\.0 -q nvarguscamerasrc .* jpegenc ! fdsink fd=1 \| \/usr\/bin\/node \/opt\/advsign\/bin\/advsign\.js serve --config \/etc\/advsign\/config\.json --source ffmpeg:-"$/m,
      /\| PrivateTmp=no$/m,
    ]);
    assert.doesNotMatch(o, /rpicam/);
    assert.doesNotMatch(o, /groupadd .*video/);
  });

  it('pipes rpicam-vid into the service with --csi-camera on a Pi', () => {
    const r = install(PI5, ['--dry-run', '--csi-camera']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /\| ExecStart=\/bin\/sh -c "rpicam-vid -t 0 -n --codec mjpeg .* -o - \| \/usr\/bin\/node \/opt\/advsign\/bin\/advsign\.js serve .* --source ffmpeg:-"$/m,
    );
    assert.doesNotMatch(r.stdout, /PrivateTmp=no/);
  });

  it('refuses unsupported systems with a clear error', () => {
    const cases: [Fake, RegExp][] = [
      [
        { osRelease: FEDORA, arch: 'aarch64' },
        /unsupported system \(Fedora Linux 40 \(Workstation Edition\) on aarch64, no device-tree model\): neither a Raspberry Pi nor a Jetson/,
      ],
      [
        { osRelease: PI_OS, arch: 'x86_64' },
        /unsupported system \(Debian GNU\/Linux 12 \(bookworm\) on x86_64, no device-tree model\): the x86_64 architecture is not one of the arm64 edge boards/,
      ],
      [{ ...PI5, arch: 'armv7l' }, /32-bit ARM userland found: install the 64-bit OS image/],
      [
        { ...PI5, osRelease: PI_OS.replace(/bookworm/g, 'bullseye').replace(/"12"/, '"11"') },
        /Raspberry Pi OS bullseye found; this installer targets Bookworm/,
      ],
      [
        { ...JETSON, osRelease: UBUNTU_1804, tegra: '# R32 (release), REVISION: 7.4, GCID: 1\n' },
        /L4T R32\.7\.4 is on Ubuntu 18\.04: Node 20 needs glibc 2\.28/,
      ],
    ];
    for (const [fake, message] of cases) {
      const r = install(fake);
      assert.strictEqual(r.code, 1, `${fake.osRelease.split('\n')[0]} on ${fake.arch} must fail:\n${r.stdout}`);
      assert.match(r.stderr, /^install\.sh: error: /);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /Supported: Raspberry Pi OS Bookworm 64-bit .* NVIDIA Jetson/);
      assert.match(r.stderr, /ADVSIGN_PLATFORM=pi/);
      assert.doesNotMatch(r.stdout, /^\+ /m, 'nothing planned');
    }
    // The override lets a similar board through.
    const forced = install({ osRelease: PI_OS, arch: 'aarch64', env: { ADVSIGN_PLATFORM: 'pi' } });
    assert.strictEqual(forced.code, 0, forced.stderr);
    const bad = install({ osRelease: PI_OS, arch: 'aarch64', env: { ADVSIGN_PLATFORM: 'beaglebone' } });
    assert.match(bad.stderr, /ADVSIGN_PLATFORM must be pi or jetson/);
  });

  it('plans --uninstall, keeping data unless --purge', () => {
    const keep = install({ ...PI5, users: ['advsign'] }, ['--dry-run', '--uninstall']);
    assert.strictEqual(keep.code, 0, keep.stderr);
    assertLines(keep.stdout, [
      /^\+ systemctl --root=\S+ disable advsign\.service$/m,
      /^\+ rm -f \S+\/etc\/systemd\/system\/advsign\.service$/m,
      /^\+ rm -rf \S+\/etc\/systemd\/system\/advsign\.service\.d \S+\/opt\/advsign /m,
      /^kept \S+\/etc\/advsign, \S+\/var\/lib\/advsign and the advsign user \(--purge removes them\)$/m,
    ]);
    assert.doesNotMatch(keep.stdout, /userdel|apt-get|npm/);
    const purge = install({ ...PI5, users: ['advsign'] }, ['--dry-run', '--uninstall', '--purge']);
    assert.strictEqual(purge.code, 0, purge.stderr);
    assertLines(purge.stdout, [/^\+ rm -rf \S+\/etc\/advsign \S+\/var\/lib\/advsign$/m, /^\+ userdel --root \S+ advsign$/m]);
    const alone = install(PI5, ['--dry-run', '--purge']);
    assert.strictEqual(alone.code, 1);
    assert.match(alone.stderr, /--purge only goes with --uninstall/);
    const unknown = install(PI5, ['--dry-run', '--frobnicate']);
    assert.strictEqual(unknown.code, 1);
    assert.match(unknown.stderr, /usage: install\.sh/);
    assert.match(unknown.stderr, /unknown option '--frobnicate'/);
  });

  it('is shellcheck-clean (skipped without shellcheck)', function () {
    const probe = spawnSync('shellcheck', ['--version'], { encoding: 'utf8' });
    if (probe.error || probe.status !== 0) this.skip();
    // The installer and the scripts that run it for real (test-install.sh) and under arm64 emulation.
    const scripts = fs
      .readdirSync(path.join(ROOT, 'scripts'))
      .filter((f) => f.endsWith('.sh'))
      .map((f) => path.join(ROOT, 'scripts', f));
    const r = spawnSync('shellcheck', ['-x', '--severity=style', SCRIPT, ...scripts], { encoding: 'utf8', cwd: ROOT });
    assert.strictEqual(r.status, 0, r.stdout + r.stderr);
  });
});

describe('deploy files', () => {
  it('config.example.json is accepted by the daemon, with the token install.sh fills in', () => {
    const example = path.join(ROOT, 'deploy', 'config.example.json');
    const { config } = loadConfig({ file: example, env: {} });
    assert.strictEqual(config.host, '0.0.0.0');
    assert.strictEqual(config.gpioButton, 17);
    assert.strictEqual(config.gpioLedOk, 27);
    assert.strictEqual(config.gpioLedFooled, 22);
    assert.strictEqual(config.snapshotDir, '/var/lib/advsign/snapshots');
    assert.strictEqual(config.requireToken, true);
    const filled = path.join(tempDir(), 'config.json');
    fs.writeFileSync(filled, fs.readFileSync(example, 'utf8').replace('"token": null', '"token": "abcdefghijklmnopqrstuvwx"'));
    assert.strictEqual(loadConfig({ file: filled, env: {} }).config.token, 'abcdefghijklmnopqrstuvwx');
  });

  it('the unit runs as advsign, restarts on failure and is hardened', () => {
    const unit = fs.readFileSync(path.join(ROOT, 'deploy', 'advsign.service'), 'utf8');
    const keys = new Map<string, string[]>();
    for (const line of unit.split('\n')) {
      const m = /^([A-Za-z]+)=(.*)$/.exec(line);
      if (m) keys.set(m[1], [...(keys.get(m[1]) ?? []), m[2]]);
    }
    const one = (k: string) => keys.get(k)?.[0];
    assert.strictEqual(one('User'), 'advsign');
    assert.strictEqual(one('Restart'), 'on-failure');
    assert.strictEqual(one('ExecStart'), '/usr/bin/node /opt/advsign/bin/advsign.js serve --config /etc/advsign/config.json');
    assert.strictEqual(one('SupplementaryGroups'), 'video gpio');
    assert.strictEqual(one('NoNewPrivileges'), 'yes');
    assert.strictEqual(one('ProtectSystem'), 'strict');
    assert.strictEqual(one('ReadWritePaths'), '/var/lib/advsign');
    assert.strictEqual(one('PrivateTmp'), 'yes');
    assert.strictEqual(one('WantedBy'), 'multi-user.target');
    for (const k of ['PrivateDevices', 'ProtectKernelTunables', 'MemoryDenyWriteExecute', 'ProtectClock']) {
      assert.ok(!keys.has(k), `${k} would break camera, GPIO or the JIT`);
    }
  });
});
