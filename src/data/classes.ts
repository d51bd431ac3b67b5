/**
 * The 43 GTSRB classes: names in class-id order and a description of how each
 * sign looks (shape, colours, pictogram), which the synthetic renderer draws.
 */

/** GTSRB class names, index = class id. */
export const CLASS_NAMES: readonly string[] = Object.freeze([
  'Speed limit (20km/h)',
  'Speed limit (30km/h)',
  'Speed limit (50km/h)',
  'Speed limit (60km/h)',
  'Speed limit (70km/h)',
  'Speed limit (80km/h)',
  'End of speed limit (80km/h)',
  'Speed limit (100km/h)',
  'Speed limit (120km/h)',
  'No passing',
  'No passing for vehicles over 3.5 t',
  'Right-of-way at the next intersection',
  'Priority road',
  'Yield',
  'Stop',
  'No vehicles',
  'Vehicles over 3.5 t prohibited',
  'No entry',
  'General caution',
  'Dangerous curve to the left',
  'Dangerous curve to the right',
  'Double curve',
  'Bumpy road',
  'Slippery road',
  'Road narrows on the right',
  'Road work',
  'Traffic signals',
  'Pedestrians',
  'Children crossing',
  'Bicycles crossing',
  'Beware of ice/snow',
  'Wild animals crossing',
  'End of all speed and passing limits',
  'Turn right ahead',
  'Turn left ahead',
  'Ahead only',
  'Go straight or right',
  'Go straight or left',
  'Keep right',
  'Keep left',
  'Roundabout mandatory',
  'End of no passing',
  'End of no passing by vehicles over 3.5 t',
]);

export const NUM_CLASSES = 43;

function checkClassId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id >= NUM_CLASSES) {
    throw new RangeError(`class id must be an integer in 0..${NUM_CLASSES - 1}, got ${id}`);
  }
}

/** Name of a class id; throws RangeError for anything but an integer in 0..42. */
export function className(id: number): string {
  checkClassId(id);
  return CLASS_NAMES[id];
}

/**
 * The GTSRB class id of each of a model's output names, −1 when a name is not a GTSRB class. A
 * name matches by its class id ('14', as in the folder names many Keras models were trained
 * from, whose outputs then come in the string order 0, 1, 10, 11, …) or by the class name
 * (case and spacing ignored).
 */
export function gtsrbClassIds(names: readonly string[]): Int32Array {
  const norm = (s: string) => s.toLowerCase().replace(/\s+/g, ' ').trim();
  const byName = new Map(CLASS_NAMES.map((n, i) => [norm(n), i]));
  return Int32Array.from(names, (raw) => {
    const s = raw.trim();
    if (/^\d+$/.test(s)) return Number(s) < NUM_CLASSES ? Number(s) : -1;
    return byName.get(norm(s)) ?? -1;
  });
}

/** True when output i is GTSRB class i for all 43 classes. */
export function isGtsrbOrder(ids: Int32Array): boolean {
  return ids.length === NUM_CLASSES && ids.every((id, i) => id === i);
}

/** Outline of a sign. 'triangle' points up (warning signs), 'inverted-triangle' is yield. */
export type SignShape = 'circle' | 'triangle' | 'inverted-triangle' | 'octagon' | 'diamond';

/** Named sign colours; the renderer maps them to RGB. */
export type SignColor = 'red' | 'white' | 'blue' | 'yellow' | 'black' | 'grey' | 'none';

/** What is drawn inside the sign. */
export type Pictogram =
  | { kind: 'none' }
  | { kind: 'number'; text: string; color: SignColor }
  | { kind: 'text'; text: string; color: SignColor }
  /** Two vehicles side by side seen from behind (no passing). */
  | { kind: 'overtake'; left: 'car' | 'truck'; leftColor: SignColor; rightColor: SignColor }
  | { kind: 'truck'; color: SignColor }
  | { kind: 'bar'; color: SignColor }
  | { kind: 'symbol'; name: SymbolName; color: SignColor }
  | { kind: 'arrow'; name: ArrowName; color: SignColor };

export type SymbolName =
  | 'crossroad'
  | 'exclamation'
  | 'curve-left'
  | 'curve-right'
  | 'double-curve'
  | 'bumps'
  | 'slippery'
  | 'narrows-right'
  | 'road-work'
  | 'traffic-signals'
  | 'pedestrian'
  | 'children'
  | 'bicycle'
  | 'snowflake'
  | 'deer';

export type ArrowName = 'turn-right' | 'turn-left' | 'ahead' | 'ahead-or-right' | 'ahead-or-left' | 'keep-right' | 'keep-left' | 'roundabout';

export interface SignSpec {
  shape: SignShape;
  /** Colour of the outer band ('none' = no band, just a thin rim). */
  border: SignColor;
  fill: SignColor;
  pictogram: Pictogram;
  /** "End of …" signs: grey diagonal strike-through band. */
  strike: boolean;
}

const speed = (text: string): SignSpec => ({
  shape: 'circle',
  border: 'red',
  fill: 'white',
  pictogram: { kind: 'number', text, color: 'black' },
  strike: false,
});
const warning = (name: SymbolName): SignSpec => ({
  shape: 'triangle',
  border: 'red',
  fill: 'white',
  pictogram: { kind: 'symbol', name, color: 'black' },
  strike: false,
});
const mandatory = (name: ArrowName): SignSpec => ({
  shape: 'circle',
  border: 'none',
  fill: 'blue',
  pictogram: { kind: 'arrow', name, color: 'white' },
  strike: false,
});
const prohibition = (pictogram: Pictogram): SignSpec => ({ shape: 'circle', border: 'red', fill: 'white', pictogram, strike: false });
const endOf = (pictogram: Pictogram): SignSpec => ({ shape: 'circle', border: 'none', fill: 'white', pictogram, strike: true });

/** Appearance of each class, index = class id (German signs, as in GTSRB). */
export const SIGN_SPECS: readonly SignSpec[] = Object.freeze([
  speed('20'),
  speed('30'),
  speed('50'),
  speed('60'),
  speed('70'),
  speed('80'),
  endOf({ kind: 'number', text: '80', color: 'grey' }),
  speed('100'),
  speed('120'),
  prohibition({ kind: 'overtake', left: 'car', leftColor: 'red', rightColor: 'black' }),
  prohibition({ kind: 'overtake', left: 'truck', leftColor: 'red', rightColor: 'black' }),
  warning('crossroad'),
  { shape: 'diamond', border: 'white', fill: 'yellow', pictogram: { kind: 'none' }, strike: false },
  { shape: 'inverted-triangle', border: 'red', fill: 'white', pictogram: { kind: 'none' }, strike: false },
  { shape: 'octagon', border: 'white', fill: 'red', pictogram: { kind: 'text', text: 'STOP', color: 'white' }, strike: false },
  prohibition({ kind: 'none' }),
  prohibition({ kind: 'truck', color: 'black' }),
  { shape: 'circle', border: 'white', fill: 'red', pictogram: { kind: 'bar', color: 'white' }, strike: false },
  warning('exclamation'),
  warning('curve-left'),
  warning('curve-right'),
  warning('double-curve'),
  warning('bumps'),
  warning('slippery'),
  warning('narrows-right'),
  warning('road-work'),
  warning('traffic-signals'),
  warning('pedestrian'),
  warning('children'),
  warning('bicycle'),
  warning('snowflake'),
  warning('deer'),
  endOf({ kind: 'none' }),
  mandatory('turn-right'),
  mandatory('turn-left'),
  mandatory('ahead'),
  mandatory('ahead-or-right'),
  mandatory('ahead-or-left'),
  mandatory('keep-right'),
  mandatory('keep-left'),
  mandatory('roundabout'),
  endOf({ kind: 'overtake', left: 'car', leftColor: 'grey', rightColor: 'grey' }),
  endOf({ kind: 'overtake', left: 'truck', leftColor: 'grey', rightColor: 'grey' }),
]);

/** Spec of a class id; throws RangeError for an out-of-range id. */
export function signSpec(id: number): SignSpec {
  checkClassId(id);
  return SIGN_SPECS[id];
}
