/**
 * The type tests in test/types/ compiled with the TypeScript compiler API, importing the
 * package by its name ('conntrack', 'conntrack/prometheus', 'conntrack/testing') as a user would: through
 * package.json "exports" to the built declarations in dist/ (`npm run build` first).
 *
 * A line after `// @ts-expect-error TSnnnn` must fail with error TSnnnn (checked by
 * compiling the files again with the markers removed); every other line must compile.
 */
import { existsSync, readdirSync, readFileSync } from 'fs';
import * as path from 'path';
import * as ts from 'typescript';

const ROOT = path.join(__dirname, '../..');
const DIR = path.join(ROOT, 'test/types');
const FILES = readdirSync(DIR).filter((f) => f.endsWith('.ts')).map((f) => path.join(DIR, f)).sort();
const MARKER = /\/\/ @ts-expect-error\b(.*)$/;

const OPTIONS: ts.CompilerOptions = {
  strict: true,
  noEmit: true,
  target: ts.ScriptTarget.ES2022,
  lib: ['lib.es2022.d.ts'],
  module: ts.ModuleKind.Node16,
  moduleResolution: ts.ModuleResolutionKind.Node16,
  types: ['node'],
  typeRoots: [path.join(ROOT, 'node_modules/@types')],
  // The package's own declarations are checked as well; only node_modules are skipped.
  skipLibCheck: false,
  skipDefaultLibCheck: true,
};

interface Found {
  file: string;
  line: number; // 1-based
  code: number;
  text: string;
}

/** Compiles the files (with `replace` applied to their text) and lists every diagnostic. */
function compile(replace?: (text: string) => string): Found[] {
  const host = ts.createCompilerHost(OPTIONS);
  const read = host.readFile.bind(host);
  host.readFile = (f) => {
    const text = read(f);
    return text !== undefined && replace && FILES.includes(path.resolve(f)) ? replace(text) : text;
  };
  const program = ts.createProgram(FILES, OPTIONS, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const file = d.file ? path.relative(ROOT, d.file.fileName) : '(global)';
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line + 1 : 0;
    return { file, line, code: d.code, text: ts.flattenDiagnosticMessageText(d.messageText, '\n') };
  });
}

const show = (ds: Found[]): string => ds.map((d) => `${d.file}:${d.line} TS${d.code} ${d.text}`).join('\n');

/** The expectations: for each file, line of the statement -> expected error code. */
function expectations(): Map<string, number> {
  const out = new Map<string, number>();
  for (const f of FILES) {
    const lines = readFileSync(f, 'utf8').split('\n');
    lines.forEach((l, i) => {
      const m = MARKER.exec(l);
      if (!m) return;
      const code = /\bTS(\d+)\b/.exec(m[1]);
      if (!code) throw new Error(`${path.relative(ROOT, f)}:${i + 1}: name the expected error, e.g. // @ts-expect-error TS2345 why`);
      out.set(`${path.relative(ROOT, f)}:${i + 2}`, Number(code[1]));
    });
  }
  return out;
}

beforeAll(() => {
  for (const built of ['dist/lib/index.d.ts', 'dist/apps/prometheus/index.d.ts', 'dist/apps/testing/index.d.ts']) {
    if (!existsSync(path.join(ROOT, built))) throw new Error(`${built} is missing: run \`npm run build\` first`);
  }
});

describe('type tests (test/types) against the built package', () => {
  test('they hold expectations, each naming its error', () => {
    expect(FILES.length).toBeGreaterThan(0);
    expect(expectations().size).toBeGreaterThan(10);
  });

  test('everything compiles, and every @ts-expect-error line does fail', () => {
    // An expectation that does not fail is itself an error (TS2578 "Unused '@ts-expect-error'").
    const found = compile();
    expect(show(found)).toBe('');
  });

  test('each marked line fails with the error it names, and nothing else fails', () => {
    const want = expectations();
    // Blank the markers, keeping line numbers.
    const found = compile((text) => text.split('\n').map((l) => l.replace(MARKER, '')).join('\n'));
    const got = new Map<string, Found[]>();
    for (const d of found) got.set(`${d.file}:${d.line}`, [...(got.get(`${d.file}:${d.line}`) ?? []), d]);
    const unexpected = found.filter((d) => !want.has(`${d.file}:${d.line}`));
    expect(show(unexpected)).toBe('');
    for (const [where, code] of want) {
      const codes = (got.get(where) ?? []).map((d) => d.code);
      expect({ where, codes }).toEqual({ where, codes: expect.arrayContaining([code]) });
    }
  });
});
