/**
 * BCM pin numbers → the global numbers the sysfs GPIO interface wants.
 *
 * Since Raspberry Pi OS kernels 6.6 the header GPIO chip no longer starts at 0: BCM 17 is 529 on
 * a Pi 4 (chip base 512) and 588 on a Pi 5 (RP1, base 571), and the base may change again. So the
 * number is derived at run time from /sys/class/gpio/gpiochip*\/{base,label,ngpio}: find the chip
 * whose label names the header controller and add its base. The sysfs root is a parameter so
 * tests build a fake tree in a temporary folder.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface GpioChip {
  /** Folder name, e.g. 'gpiochip512'. */
  name: string;
  base: number;
  ngpio: number;
  label: string;
}

/**
 * Labels of the chip that drives the 40-pin header, most specific first. On a Pi 5 the SoC's
 * own 'pinctrl-bcm2712' chips also exist but are not the header (RP1 is), so they are not listed.
 */
export const HEADER_CHIP_LABELS: readonly string[] = ['pinctrl-rp1', 'pinctrl-bcm2711', 'pinctrl-bcm2835'];

export function gpioClassDir(sysRoot = '/sys'): string {
  return path.join(sysRoot, 'class', 'gpio');
}

/** The GPIO chips sysfs shows (empty when there is no GPIO sysfs at all). */
export function listGpioChips(sysRoot = '/sys'): GpioChip[] {
  const dir = gpioClassDir(sysRoot);
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((n) => /^gpiochip\d+$/.test(n));
  } catch {
    return [];
  }
  const chips: GpioChip[] = [];
  for (const name of names) {
    try {
      const read = (f: string) => fs.readFileSync(path.join(dir, name, f), 'utf8').trim();
      const base = Number(read('base'));
      const ngpio = Number(read('ngpio'));
      if (!Number.isInteger(base) || !Number.isInteger(ngpio)) continue;
      chips.push({ name, base, ngpio, label: read('label') });
    } catch {
      /* a chip folder without the files: skip */
    }
  }
  return chips.sort((a, b) => a.base - b.base);
}

/** The header chip: the configured label if given, else the first known Pi label present. */
export function findHeaderChip(chips: GpioChip[], label?: string): GpioChip | null {
  if (label) return chips.find((c) => c.label === label) ?? null;
  for (const l of HEADER_CHIP_LABELS) {
    const c = chips.find((x) => x.label === l);
    if (c) return c;
  }
  return null;
}

export interface ResolvedPin {
  bcm: number;
  global: number;
  chip: GpioChip | null;
}

/** Global sysfs number for a BCM pin; throws with the chips found when it cannot decide. */
export function globalGpioNumber(bcm: number, opts: { sysRoot?: string; chipLabel?: string } = {}): ResolvedPin {
  if (!Number.isInteger(bcm) || bcm < 0) throw new Error(`GPIO pin must be a BCM number ≥ 0, got ${bcm}`);
  const chips = listGpioChips(opts.sysRoot);
  if (chips.length === 0) throw new Error(`no GPIO chips under ${gpioClassDir(opts.sysRoot)}`);
  const chip = findHeaderChip(chips, opts.chipLabel);
  if (!chip) {
    const seen = chips.map((c) => `${c.name} '${c.label}'`).join(', ');
    throw new Error(
      `no header GPIO chip (${opts.chipLabel ? `label '${opts.chipLabel}'` : HEADER_CHIP_LABELS.join(' / ')}) among ${seen}; set gpioChip in the config`,
    );
  }
  if (bcm >= chip.ngpio) throw new Error(`GPIO ${bcm} is beyond ${chip.name} '${chip.label}' (${chip.ngpio} lines)`);
  return { bcm, global: chip.base + bcm, chip };
}
