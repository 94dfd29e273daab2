/**
 * The shape of lib/: no import cycles among its files (type-only imports and re-exports
 * included, parsed with the TypeScript compiler API), and lib/conntrack.ts, the
 * composition root, is imported by the package entry alone.
 */
import { readdirSync, readFileSync, statSync } from 'fs';
import * as path from 'path';
import * as ts from 'typescript';

const LIB = path.join(__dirname, '../../lib');

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out.sort();
}

/** Every module specifier a file names: import, import type, export ... from, import(), require(). */
function specifiers(file: string): string[] {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const out: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      out.push(node.moduleSpecifier.text);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) && ts.isStringLiteral(node.moduleReference.expression)) {
      out.push(node.moduleReference.expression.text);
    } else if (ts.isCallExpression(node) && node.arguments.length === 1 && ts.isStringLiteral(node.arguments[0])) {
      const callee = node.expression;
      if (callee.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(callee) && callee.text === 'require')) out.push(node.arguments[0].text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      out.push(node.argument.literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

/** Resolves a relative specifier to a lib/ file (`./x` -> x.ts or x/index.ts); undefined for packages. */
function resolve(from: string, spec: string, files: Set<string>): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  const base = path.resolve(path.dirname(from), spec);
  for (const candidate of [base, `${base}.ts`, path.join(base, 'index.ts')]) if (files.has(candidate)) return candidate;
  throw new Error(`${path.relative(LIB, from)}: cannot resolve ${spec}`);
}

function importGraph(): Map<string, string[]> {
  const list = sourceFiles(LIB);
  const files = new Set(list);
  const graph = new Map<string, string[]>();
  for (const f of list) {
    const deps = specifiers(f).map((s) => resolve(f, s, files)).filter((d): d is string => d !== undefined);
    graph.set(f, [...new Set(deps)]);
  }
  return graph;
}

/** Every cycle found by a depth-first search, each as the list of files around it. */
function cycles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const dfs = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      const s = state.get(next);
      if (s === 'open') found.push([...stack.slice(stack.indexOf(next)), next]);
      else if (s === undefined) dfs(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of graph.keys()) if (!state.has(node)) dfs(node);
  return found;
}

const rel = (f: string): string => path.relative(LIB, f);

describe('lib/ import graph', () => {
  const graph = importGraph();

  test('the search finds a cycle when there is one', () => {
    const g = new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]]);
    expect(cycles(g)).toEqual([['a', 'b', 'c', 'a']]);
    expect(cycles(new Map([['a', ['b']], ['b', []]]))).toEqual([]);
  });

  test('the parser sees type-only imports, re-exports and require()', () => {
    const index = path.join(LIB, 'index.ts');
    expect(graph.get(index)).toContain(path.join(LIB, 'conntrack.ts'));
    const handle = path.join(LIB, 'wire/handle.ts');
    // wire/handle.ts has nothing but `import type`.
    expect(graph.get(handle)).toEqual(expect.arrayContaining([path.join(LIB, 'wire/dump.ts'), path.join(LIB, 'wire/socket.ts')]));
    expect(graph.size).toBeGreaterThan(30);
  });

  test('has no cycles, type-only imports included', () => {
    expect(cycles(graph).map((c) => c.map(rel).join(' -> '))).toEqual([]);
  });

  test('lib/conntrack.ts (the composition root) is imported by lib/index.ts alone', () => {
    const root = path.join(LIB, 'conntrack.ts');
    const importers = [...graph].filter(([, deps]) => deps.includes(root)).map(([f]) => rel(f));
    expect(importers).toEqual(['index.ts']);
  });
});

/**
 * Apps use the package as a user would: from lib/ they import the public entry only, and
 * from another app only its public entry (the package's subpath exports).
 */
describe('apps/ import only public entries', () => {
  const APPS = path.join(__dirname, '../../apps');
  const publicEntries = new Set([
    path.join(LIB, 'index.ts'),
    path.join(APPS, 'prometheus/index.ts'),
    path.join(APPS, 'testing/index.ts'),
  ]);
  const appOf = (f: string): string => path.relative(APPS, f).split(path.sep)[0];

  test('every relative import from apps/ into lib/ or another app names a public entry', () => {
    const wrong: string[] = [];
    const files = sourceFiles(APPS);
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) {
      for (const spec of specifiers(f)) {
        if (!spec.startsWith('.')) continue;
        const base = path.resolve(path.dirname(f), spec);
        const target = [base, `${base}.ts`, path.join(base, 'index.ts')].find((c) => {
          try {
            return statSync(c).isFile();
          } catch {
            return false;
          }
        });
        if (target === undefined) {
          wrong.push(`${path.relative(APPS, f)}: cannot resolve ${spec}`);
          continue;
        }
        const inLib = !path.relative(LIB, target).startsWith('..');
        const otherApp = !inLib && appOf(target) !== appOf(f);
        if ((inLib || otherApp) && !publicEntries.has(target)) wrong.push(`${path.relative(APPS, f)} -> ${spec}`);
      }
    }
    expect(wrong).toEqual([]);
  });
});
