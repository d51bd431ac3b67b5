/**
 * One-way layers (docs/ARCHITECTURE.md, "The layers"): every import in src/ is parsed (static,
 * type-only, re-exports, lazy import() and require) and checked against the layer table. An
 * import that points up, or any import cycle, fails, unless it is in ALLOWED_UPWARD /
 * ALLOWED_CYCLES below with its reason; an entry that no longer occurs fails too, so the lists
 * only shrink. Static: nothing is loaded or run.
 */
import * as assert from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import ts from 'typescript';
import { ROOT } from './helpers';

interface Layer {
  name: string;
  /** Folders (ending in '/') or files, relative to the repository. */
  holds: string[];
  mayImport: string[];
}

const BELOW_SERVER = ['util', 'data', 'inference', 'capture', 'gpio', 'attack', 'defense', 'sticker'];
const TFLITE_ATTACK_LEVEL = ['src/tflite/robustness.ts', 'src/tflite/bench.ts', 'src/tflite/index.ts'];

const LAYERS: Layer[] = [
  { name: 'util', holds: ['src/util/'], mayImport: [] },
  { name: 'data', holds: ['src/data/'], mayImport: ['util'] },
  // The model-format half of src/tflite is what load-model reads: it sits with inference.
  { name: 'inference', holds: ['src/inference/', 'src/tflite/'], mayImport: ['util', 'data'] },
  { name: 'capture', holds: ['src/capture/'], mayImport: ['util', 'data'] },
  { name: 'gpio', holds: ['src/gpio/'], mayImport: ['util', 'data'] },
  { name: 'attack', holds: ['src/attack/', ...TFLITE_ATTACK_LEVEL], mayImport: ['util', 'data', 'inference'] },
  { name: 'defense', holds: ['src/defense/'], mayImport: ['util', 'data', 'inference', 'attack'] },
  { name: 'sticker', holds: ['src/sticker/'], mayImport: ['util', 'data', 'inference', 'attack'] },
  { name: 'server', holds: ['src/server/'], mayImport: BELOW_SERVER },
  { name: 'cli', holds: ['src/cli/'], mayImport: [...BELOW_SERVER, 'server'] },
  { name: 'package', holds: ['src/index.ts'], mayImport: [...BELOW_SERVER, 'server', 'cli'] },
];

/** Imports that still point up today, "from -> to": why. Fix one, then delete its line. */
const ALLOWED_UPWARD: Record<string, string> = {};

/** Import cycles that exist today, as their sorted files joined by ', ': why. */
const ALLOWED_CYCLES: Record<string, string> = {};

export interface ImportEdge {
  from: string;
  to: string;
  typeOnly: boolean;
}

function listSources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return listSources(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** The relative module specifiers a file imports (anything not starting with '.' is a package). */
export function importSpecifiers(fileName: string, text: string): { spec: string; typeOnly: boolean }[] {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.ES2022, false, ts.ScriptKind.TS);
  const out: { spec: string; typeOnly: boolean }[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      out.push({ spec: node.moduleSpecifier.text, typeOnly: node.importClause?.isTypeOnly ?? false });
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      out.push({ spec: node.moduleSpecifier.text, typeOnly: node.isTypeOnly });
    } else if (
      ts.isImportEqualsDeclaration(node) &&
      ts.isExternalModuleReference(node.moduleReference) &&
      ts.isStringLiteral(node.moduleReference.expression)
    ) {
      out.push({ spec: node.moduleReference.expression.text, typeOnly: node.isTypeOnly });
    } else if (
      ts.isCallExpression(node) &&
      node.arguments.length === 1 &&
      ts.isStringLiteral(node.arguments[0]) &&
      (node.expression.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(node.expression) && node.expression.text === 'require'))
    ) {
      out.push({ spec: node.arguments[0].text, typeOnly: false });
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      out.push({ spec: node.argument.literal.text, typeOnly: true });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out.filter((i) => i.spec.startsWith('.'));
}

/** Every relative import in src/, resolved to repository-relative .ts paths. */
function sourceGraph(): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const abs of listSources(path.join(ROOT, 'src'))) {
    const from = path.relative(ROOT, abs).split(path.sep).join('/');
    for (const { spec, typeOnly } of importSpecifiers(abs, fs.readFileSync(abs, 'utf8'))) {
      const base = path.join(path.dirname(abs), spec);
      const hit = [`${base}.ts`, path.join(base, 'index.ts'), base].find((c) => c.endsWith('.ts') && fs.existsSync(c));
      if (!hit) continue; // .json and other non-TypeScript files are no layer
      edges.push({ from, to: path.relative(ROOT, hit).split(path.sep).join('/'), typeOnly });
    }
  }
  return edges;
}

export function layerOf(file: string, layers: Layer[] = LAYERS): Layer | undefined {
  // A file named in a layer wins over the folder that holds it.
  return layers.find((l) => l.holds.includes(file)) ?? layers.find((l) => l.holds.some((h) => h.endsWith('/') && file.startsWith(h)));
}

/** "from -> to" for every import whose target's layer is neither the importer's own nor one it may import. */
export function upwardImports(edges: ImportEdge[], layers: Layer[] = LAYERS): string[] {
  const bad = new Set<string>();
  for (const e of edges) {
    const a = layerOf(e.from, layers),
      b = layerOf(e.to, layers);
    if (!a || !b) throw new Error(`no layer for ${a ? e.to : e.from}: add it to the layer table (and docs/ARCHITECTURE.md)`);
    if (a !== b && !a.mayImport.includes(b.name)) bad.add(`${e.from} -> ${e.to}`);
  }
  return [...bad].sort();
}

/** Each strongly connected group of more than one file (or a file importing itself), as sorted files joined by ', '. */
export function importCycles(edges: ImportEdge[]): string[] {
  const next = new Map<string, string[]>();
  for (const e of edges) {
    next.set(e.from, [...(next.get(e.from) ?? []), e.to]);
    if (!next.has(e.to)) next.set(e.to, []);
  }
  // Tarjan's algorithm.
  let counter = 0;
  const index = new Map<string, number>(),
    low = new Map<string, number>(),
    stack: string[] = [],
    onStack = new Set<string>();
  const groups: string[] = [];
  const connect = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const group: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      group.push(w);
    } while (w !== v);
    if (group.length > 1 || (next.get(v) ?? []).includes(v)) groups.push(group.sort().join(', '));
  };
  for (const v of next.keys()) if (!index.has(v)) connect(v);
  return groups.sort();
}

describe('layers: imports go one way', () => {
  const edges = sourceGraph();

  it('parses the source tree (sanity: hundreds of imports, every file in a layer)', () => {
    assert.ok(edges.length > 300, `only ${edges.length} imports found`);
    for (const f of listSources(path.join(ROOT, 'src'))) {
      const rel = path.relative(ROOT, f).split(path.sep).join('/');
      assert.ok(layerOf(rel), `${rel} is in no layer`);
    }
  });

  it('no import points up the layer order (except the listed ones)', () => {
    const found = upwardImports(edges);
    const unlisted = found.filter((k) => !(k in ALLOWED_UPWARD));
    assert.deepStrictEqual(unlisted, [], `imports that point up (docs/ARCHITECTURE.md, "The layers"):\n  ${unlisted.join('\n  ')}`);
    const fixed = Object.keys(ALLOWED_UPWARD).filter((k) => !found.includes(k));
    assert.deepStrictEqual(fixed, [], 'no longer pointing up: delete from ALLOWED_UPWARD in test/layers.test.ts');
  });

  it('no import cycle (type-only and lazy imports included; except the listed ones)', () => {
    const found = importCycles(edges);
    const unlisted = found.filter((k) => !(k in ALLOWED_CYCLES));
    assert.deepStrictEqual(unlisted, [], `import cycles:\n  ${unlisted.join('\n  ')}`);
    const fixed = Object.keys(ALLOWED_CYCLES).filter((k) => !found.includes(k));
    assert.deepStrictEqual(fixed, [], 'no longer a cycle: delete from ALLOWED_CYCLES in test/layers.test.ts');
  });

  it('the checks catch what they name: an upward import, a cycle, every import form', () => {
    const planted: ImportEdge[] = [
      { from: 'src/data/a.ts', to: 'src/server/b.ts', typeOnly: true },
      { from: 'src/server/b.ts', to: 'src/data/a.ts', typeOnly: false },
      { from: 'src/cli/c.ts', to: 'src/server/b.ts', typeOnly: false },
    ];
    assert.deepStrictEqual(upwardImports(planted), ['src/data/a.ts -> src/server/b.ts']);
    assert.deepStrictEqual(importCycles(planted), ['src/data/a.ts, src/server/b.ts']);
    assert.strictEqual(layerOf('src/tflite/bench.ts')?.name, 'attack');
    assert.strictEqual(layerOf('src/tflite/runtime.ts')?.name, 'inference');
    const text = [
      "import { a } from './a';",
      "import type { B } from '../b';",
      "export { c } from './c';",
      "export * from './d';",
      "const e = await import('./e');",
      "const f = require('./f');",
      "let g: import('./g').G;",
      "import * as fs from 'node:fs';",
      "// import { h } from './h';",
      'const s = "import { i } from \'./i\'";',
    ].join('\n');
    assert.deepStrictEqual(
      importSpecifiers('x.ts', text).map((i) => `${i.spec}${i.typeOnly ? ' (type)' : ''}`),
      ['./a', '../b (type)', './c', './d', './e', './f', './g (type)'],
    );
  });
});
