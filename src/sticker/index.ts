/** Physical attacks: EOT transformations, masks, NPS/TV, sticker and printed-sign optimisation, measurement, PDF export. */
export * from './eot';
export * from './masks';
export * from './palette';
export * from './optimize';
export * from './measure';
export * from './roundtrip';
export * from './pdf';
export * from './layer';
export * from './run-file';
