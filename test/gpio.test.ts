import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { globalGpioNumber, listGpioChips, findHeaderChip } from '../src/gpio/sysfs';
import { createGpio, GpioController, MemoryDriver } from '../src/gpio';

/** A fake /sys with the given gpiochips (name → base, label, ngpio). */
function fakeSys(chips: [number, string, number][]): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'advsign-sys-'));
  const dir = path.join(root, 'class', 'gpio');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'export'), '');
  fs.writeFileSync(path.join(dir, 'unexport'), '');
  for (const [base, label, ngpio] of chips) {
    const c = path.join(dir, `gpiochip${base}`);
    fs.mkdirSync(c);
    fs.writeFileSync(path.join(c, 'base'), `${base}\n`);
    fs.writeFileSync(path.join(c, 'label'), `${label}\n`);
    fs.writeFileSync(path.join(c, 'ngpio'), `${ngpio}\n`);
  }
  return root;
}

const PI4_KERNEL_66: [number, string, number][] = [
  [512, 'pinctrl-bcm2711', 58],
  [570, 'raspberrypi-exp-gpio', 8],
];
const PI5_KERNEL_66: [number, string, number][] = [
  [512, 'gpio-brcmstb@107d508500', 32],
  [544, 'gpio-brcmstb@107d508520', 4],
  [548, 'gpio-brcmstb@107d517c00', 17],
  [565, 'gpio-brcmstb@107d517c20', 6],
  [571, 'pinctrl-rp1', 54],
];
const PI3_OLD_KERNEL: [number, string, number][] = [
  [0, 'pinctrl-bcm2835', 54],
  [504, 'raspberrypi-exp-gpio', 8],
];

describe('gpio: sysfs number offsets', () => {
  const roots: string[] = [];
  const sys = (chips: [number, string, number][]) => {
    const r = fakeSys(chips);
    roots.push(r);
    return r;
  };
  after(() => roots.forEach((r) => fs.rmSync(r, { recursive: true, force: true })));

  it('Pi 4 on kernel ≥ 6.6: header chip pinctrl-bcm2711 at base 512', () => {
    const root = sys(PI4_KERNEL_66);
    assert.equal(globalGpioNumber(17, { sysRoot: root }).global, 529);
    assert.equal(globalGpioNumber(27, { sysRoot: root }).global, 539);
    assert.equal(globalGpioNumber(22, { sysRoot: root }).chip!.label, 'pinctrl-bcm2711');
  });

  it('Pi 5: the RP1 chip (base 571), not the SoC brcmstb chips', () => {
    const root = sys(PI5_KERNEL_66);
    const r = globalGpioNumber(17, { sysRoot: root });
    assert.equal(r.global, 588);
    assert.equal(r.chip!.name, 'gpiochip571');
  });

  it('older kernels: base 0, numbers unchanged', () => {
    assert.equal(globalGpioNumber(17, { sysRoot: sys(PI3_OLD_KERNEL) }).global, 17);
  });

  it('another board: an explicit chip label', () => {
    const root = sys([
      [300, 'tegra234-gpio', 164],
      [316, 'tegra234-gpio-aon', 32],
    ]);
    assert.throws(() => globalGpioNumber(5, { sysRoot: root }), /no header GPIO chip.*tegra234-gpio/);
    assert.equal(globalGpioNumber(5, { sysRoot: root, chipLabel: 'tegra234-gpio-aon' }).global, 321);
  });

  it('clear errors: no sysfs, a pin beyond the chip, a bad number', () => {
    assert.throws(() => globalGpioNumber(17, { sysRoot: path.join(os.tmpdir(), 'advsign-no-such-sys') }), /no GPIO chips/);
    assert.throws(() => globalGpioNumber(60, { sysRoot: sys(PI3_OLD_KERNEL) }), /beyond gpiochip0/);
    assert.throws(() => globalGpioNumber(-1), /BCM number/);
  });

  it('lists chips sorted by base and finds the header chip', () => {
    const chips = listGpioChips(sys(PI5_KERNEL_66));
    assert.deepEqual(
      chips.map((c) => c.base),
      [512, 544, 548, 565, 571],
    );
    assert.equal(findHeaderChip(chips)!.label, 'pinctrl-rp1');
  });
});

describe('gpio: button and LEDs', function () {
  this.timeout(10000);
  let root: string;
  before(() => {
    root = fakeSys(PI4_KERNEL_66);
  });
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  it('opens the derived global pins, drives LEDs, reads short and long presses, unexports on close', async () => {
    const board = new MemoryDriver();
    const gpio = createGpio({ button: 17, ledOk: 27, ledFooled: 22, sysfsRoot: root, longPressMs: 80 }, { driver: board });
    assert.deepEqual([...board.exported].sort(), [529, 534, 539]);
    assert.deepEqual(
      gpio.state.pins.map((p) => [p.role, p.bcm, p.global]),
      [
        ['button', 17, 529],
        ['ledOk', 27, 539],
        ['ledFooled', 22, 534],
      ],
    );
    gpio.indicate('ok');
    assert.equal(board.values.get(539), 1);
    assert.equal(board.values.get(534), 0);
    gpio.indicate('fooled');
    assert.equal(board.values.get(539), 0);
    assert.equal(board.values.get(534), 1);
    assert.deepEqual(gpio.state.leds, { ok: false, fooled: true });

    const presses: string[] = [];
    gpio.onPress((k) => presses.push(k));
    board.set(529, 1);
    await new Promise((r) => setTimeout(r, 20));
    board.set(529, 0);
    board.set(529, 1);
    await new Promise((r) => setTimeout(r, 150)); // held past longPressMs: fires while held
    assert.deepEqual(presses, ['short', 'long']);
    board.set(529, 0); // release after a long press: no extra short press
    assert.deepEqual(presses, ['short', 'long']);

    gpio.close();
    assert.equal(board.exported.size, 0, 'every pin unexported');
    assert.equal(board.values.get(534), 0, 'LEDs off');
    gpio.close(); // twice is fine
  });

  it('an active-low button (to GND with a pull-up)', async () => {
    const board = new MemoryDriver();
    board.values.set(529, 1);
    const gpio = createGpio({ button: 17, sysfsRoot: root, buttonActiveLow: true }, { driver: board });
    const presses: string[] = [];
    gpio.onPress((k) => presses.push(k));
    board.set(529, 0);
    board.set(529, 1);
    gpio.close();
    assert.deepEqual(presses, ['short']);
  });

  it('falls back to a stand-in with readable state when GPIO is not accessible', () => {
    const gpio = createGpio({ ledOk: 27, ledFooled: 22, button: 17, sysfsRoot: root });
    // On this machine onoff cannot open /sys/class/gpio (no native epoll build, no GPIO): a stand-in.
    if (gpio.state.mode === 'onoff') {
      gpio.close();
      return;
    }
    assert.equal(gpio.state.mode, 'stand-in');
    assert.ok(gpio.state.reason);
    gpio.indicate('fooled');
    assert.deepEqual(gpio.state.leds, { ok: false, fooled: true });
    let got = '';
    gpio.onPress((k) => {
      got = k;
    });
    gpio.simulatePress('long');
    assert.equal(got, 'long');
    assert.equal(gpio.state.presses.long, 1);
    gpio.close();
    assert.equal(gpio.state.closed, true);
  });

  it('is disabled (no-ops) when no pins are configured', () => {
    const gpio: GpioController = createGpio({});
    assert.equal(gpio.state.mode, 'disabled');
    gpio.indicate('ok');
    gpio.close();
  });

  it('releases already-exported pins when a later pin fails', () => {
    const board = new MemoryDriver();
    assert.throws(() => createGpio({ ledOk: 27, ledFooled: 99, sysfsRoot: root }, { driver: { kind: 'onoff', open: (g, d) => board.open(g, d) } }), /beyond/);
    assert.equal(board.exported.size, 0);
  });
});
