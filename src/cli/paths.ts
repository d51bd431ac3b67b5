/** Kept for older imports: the path helpers live in src/util/paths.ts (every layer may use them). */
export { projectRoot, version, defaultModelDir } from '../util/paths';
