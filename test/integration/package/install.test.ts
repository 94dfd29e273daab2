/**
 * The tarball a user gets, installed the way a user installs it: `npm pack`, then
 * `npm install` into a fresh project on a machine with no compiler (CC and CXX are
 * /bin/false) and no python3 on PATH, offline (the dependencies come from tarballs of
 * the local node_modules). The prebuild must load and talk to the kernel in a fresh
 * network namespace. Also checks what the tarball holds, the glibc the prebuilds need
 * (objdump -T against the README), the load errors, and the arm64 prebuild under qemu-user.
 *
 * Needs prebuilds/ (`npm run build:prebuilds`); the arm64 load test also needs
 * qemu-aarch64-static and `scripts/arm64-node-sysroot.sh` (both done by .ci/run).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { sandbox } from '../../../apps/testing';

const ROOT = path.join(__dirname, '..', '..', '..');
const PREBUILD = 'conntrack.glibc.node';
const X64 = path.join(ROOT, 'prebuilds', 'linux-x64', PREBUILD);
const ARM64 = path.join(ROOT, 'prebuilds', 'linux-arm64', PREBUILD);
const SYSROOT = path.join(ROOT, '.cache', 'arm64-node', 'root');
const QEMU = '/usr/bin/qemu-aarch64-static';

let tmp: string;
let app: string; // the user's project
let installed: string; // app/node_modules/conntrack
let bin: string; // the only directory on PATH: node, npm, sh
let tarballs: string; // the package's and its dependencies' tarballs
let packed: { files: { path: string }[]; size: number; unpackedSize: number };

/** `npm install` of the tarballs, offline, with a cache of its own. */
function installArgs(): string[] {
  const tgz = fs.readdirSync(tarballs).map((f) => path.join(tarballs, f));
  return ['install', '--offline', '--no-audit', '--no-fund', '--cache', path.join(tmp, 'npm-cache'), ...tgz];
}

/** The environment of a machine without a compiler or python: nothing inherited but HOME. */
function bareEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: bin, HOME: path.join(tmp, 'home'), CC: '/bin/false', CXX: '/bin/false', LANG: 'C', ...extra };
}

function run(cmd: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const r = spawnSync(cmd, args, { cwd: options.cwd ?? ROOT, env: options.env ?? process.env, encoding: 'utf8', maxBuffer: 64 << 20, timeout: 300000, killSignal: 'SIGKILL' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The JSON array `npm pack --json` prints after whatever the prepack script printed. */
function packJson(out: string): typeof packed {
  const start = out.search(/^\[/m);
  return JSON.parse(out.slice(start))[0];
}

/** The glibc version a binary needs: the highest GLIBC_x.y in its dynamic symbol table. */
function glibcNeeded(file: string): { max: string; all: string[]; cxx: string[] } {
  const out = run('objdump', ['-T', file]);
  const versions = [...new Set(out.match(/\bGLIBC_[0-9.]+/g) ?? [])].map((v) => v.slice(6));
  versions.sort(compareVersions);
  return { max: versions[versions.length - 1], all: versions, cxx: [...new Set(out.match(/\b(GLIBCXX|CXXABI)_[0-9.]+/g) ?? [])] };
}

function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  }
  return 0;
}

function neededLibraries(file: string): string[] {
  return [...run('objdump', ['-p', file]).matchAll(/^\s*NEEDED\s+(\S+)/gm)].map((m) => m[1]).sort();
}

/** The minimum glibc the README states for the prebuilds. */
function readmeGlibc(): string {
  const m = /prebuilt binaries need \*\*glibc ([0-9]+\.[0-9]+)\*\* or later/.exec(fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8'));
  if (!m) throw new Error('README.md does not state the minimum glibc ("prebuilt binaries need **glibc X.Y** or later")');
  return m[1];
}

/** Every file under dir, relative to it. */
function walk(dir: string, rel = ''): string[] {
  return fs.readdirSync(path.join(dir, rel), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(dir, path.join(rel, e.name)) : [path.join(rel, e.name)],
  );
}

/** A script run by the user's project (written there, so `require('conntrack')` resolves as for a user). */
function appScript(name: string, source: string): string {
  const file = path.join(app, name);
  fs.writeFileSync(file, source);
  return file;
}

/** Reports which .node files the process has mapped, then what happened. */
const OPEN_AND_LIST = `
const fs = require('fs');
const { Conntrack } = require('conntrack');
const mapped = () => [...new Set(fs.readFileSync('/proc/self/maps', 'utf8').split('\\n')
  .map((l) => l.trim().split(/\\s+/)[5]).filter((p) => p && p.endsWith('.node')))];
(async () => {
  try {
    const ct = await Conntrack.open(process.argv[2] ? { netns: process.argv[2] } : {});
    const flows = await ct.list();
    await ct.close();
    console.log(JSON.stringify({ ok: true, mapped: mapped(), flows }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, mapped: mapped(), code: e.code, errno: e.errno, message: e.message }));
  }
})();
`;

beforeAll(() => {
  for (const file of [X64, ARM64]) {
    if (!fs.existsSync(file)) throw new Error(`${path.relative(ROOT, file)} is missing: run \`npm run build:prebuilds\` first`);
  }
  // A prebuild older than the native sources would ship stale code.
  const sources = [path.join(ROOT, 'binding.gyp'), ...walk(path.join(ROOT, 'native')).map((f) => path.join(ROOT, 'native', f))];
  const newest = Math.max(...sources.map((f) => fs.statSync(f).mtimeMs));
  for (const file of [X64, ARM64]) {
    if (fs.statSync(file).mtimeMs < newest) throw new Error(`${path.relative(ROOT, file)} is older than native/: run \`npm run build:prebuilds\``);
  }

  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'conntrack-install-'));
  fs.mkdirSync(path.join(tmp, 'home'));
  bin = path.join(tmp, 'bin');
  fs.mkdirSync(bin);
  const npmCli = fs.realpathSync(run('sh', ['-c', 'command -v npm']).trim());
  fs.symlinkSync(process.execPath, path.join(bin, 'node'));
  fs.symlinkSync(npmCli, path.join(bin, 'npm'));
  fs.symlinkSync('/bin/sh', path.join(bin, 'sh'));

  tarballs = path.join(tmp, 'tarballs');
  fs.mkdirSync(tarballs);
  packed = packJson(run('npm', ['pack', '--json', '--pack-destination', tarballs]));
  // The package's own dependencies, from the local node_modules, so the install is offline.
  const deps = ['node-gyp-build', 'node-addon-api'].map((d) => path.join(ROOT, 'node_modules', d));
  run('npm', ['pack', '--ignore-scripts', '--pack-destination', tarballs, ...deps]);

  app = path.join(tmp, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  run('npm', installArgs(), { cwd: app, env: bareEnv() });
  installed = path.join(app, 'node_modules', 'conntrack');
  appScript('list.js', OPEN_AND_LIST);
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('npm install on a machine without a compiler or python', () => {
  test('the install environment has no python and no working compiler', () => {
    const probe = spawnSync('sh', ['-c', 'command -v python3 || command -v python || command -v gcc || command -v g++ || command -v make'], { env: bareEnv() });
    expect(probe.status).not.toBe(0);
    expect(spawnSync('/bin/false').status).toBe(1);
  });

  test('nothing was built from source: the package has no build/ directory', () => {
    expect(fs.existsSync(path.join(installed, 'package.json'))).toBe(true);
    expect(fs.existsSync(path.join(installed, 'build'))).toBe(false);
  });

  test('require("conntrack") loads the x64 prebuild and lists the flows of a fresh namespace', async () => {
    const sb = await sandbox();
    try {
      const ns = sb.path;
      await sb.run('conntrack', ['-I', '-p', 'udp', '-s', '10.11.0.1', '-d', '10.11.0.2',
        '--sport', '5353', '--dport', '53', '--timeout', '120', '--mark', '42']);
      const cli = (await sb.run('conntrack', ['-L'])).stdout;
      expect(cli).toMatch(/src=10\.11\.0\.1 dst=10\.11\.0\.2 sport=5353 dport=53/);

      const result = JSON.parse(run('node', [path.join(app, 'list.js'), ns], { cwd: app, env: bareEnv() }));
      expect(result).toMatchObject({ ok: true });
      expect(result.mapped).toEqual([fs.realpathSync(path.join(installed, 'prebuilds', 'linux-x64', PREBUILD))]);
      expect(result.flows).toHaveLength(1);
      expect(result.flows[0]).toMatchObject({
        family: 'ipv4',
        proto: 'udp',
        mark: 42,
        orig: { src: '10.11.0.1', dst: '10.11.0.2', sport: 5353, dport: 53 },
        reply: { src: '10.11.0.2', dst: '10.11.0.1', sport: 53, dport: 5353 },
      });
    } finally {
      await sb.close();
    }
  });
});

describe('the tarball', () => {
  const paths = () => packed.files.map((f) => f.path);

  test('holds both prebuilds, the compiled library with its types, the sources to build from, and the docs', () => {
    expect(paths()).toEqual(
      expect.arrayContaining([
        `prebuilds/linux-x64/${PREBUILD}`,
        `prebuilds/linux-arm64/${PREBUILD}`,
        'dist/lib/index.js',
        'dist/lib/index.d.ts',
        'binding.gyp',
        'native/addon.cc',
        'docs/api/README.md',
        'bench/README.md',
        'README.md',
        'LICENSE',
      ]),
    );
    // ELF machine numbers: 62 is x86-64, 183 is AArch64.
    expect(fs.readFileSync(path.join(installed, 'prebuilds', 'linux-x64', PREBUILD)).readUInt16LE(18)).toBe(62);
    expect(fs.readFileSync(path.join(installed, 'prebuilds', 'linux-arm64', PREBUILD)).readUInt16LE(18)).toBe(183);
  });

  test('holds no test or benchmark code and no build leftovers', () => {
    const stray = paths().filter(
      (p) => /^(test|build|\.cache|\.ci)\//.test(p) || (p.startsWith('scripts/') && p !== 'scripts/install.js') || (p.startsWith('bench/') && !p.endsWith('.md')) || /\.tsbuildinfo$|\.test\.|^dist\/test\//.test(p),
    );
    expect(stray).toEqual([]);
  });

  test('every relative link in the README and the docs resolves inside the installed package', () => {
    const markdown = walk(installed).filter((f) => f.endsWith('.md') && !f.startsWith('node_modules'));
    expect(markdown).toEqual(expect.arrayContaining(['README.md', 'docs/api/README.md', 'docs/dump.md']));
    const broken: string[] = [];
    let links = 0;
    for (const file of markdown) {
      const text = fs.readFileSync(path.join(installed, file), 'utf8');
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/i.test(target) || target.startsWith('#')) continue;
        links++;
        const resolved = path.join(installed, path.dirname(file), decodeURIComponent(target.split('#')[0]));
        if (!fs.existsSync(resolved)) broken.push(`${file} -> ${target}`);
      }
    }
    expect(broken).toEqual([]);
    expect(links).toBeGreaterThan(100);
    expect(fs.readFileSync(path.join(installed, 'README.md'), 'utf8')).toContain('](docs/api/README.md)');
  });

  test('source maps point at TypeScript sources that are in the package', () => {
    const maps = walk(installed).filter((f) => f.startsWith('dist/') && f.endsWith('.js.map'));
    expect(maps.length).toBeGreaterThan(10);
    const missing: string[] = [];
    for (const map of maps) {
      const { sources, sourceRoot } = JSON.parse(fs.readFileSync(path.join(installed, map), 'utf8'));
      for (const source of sources as string[]) {
        const file = path.resolve(installed, path.dirname(map), sourceRoot ?? '', source);
        if (!file.startsWith(installed + path.sep) || !fs.existsSync(file)) missing.push(`${map} -> ${source}`);
      }
    }
    expect(missing).toEqual([]);
  });

  test('package.json names the repository, homepage and issue tracker, all the same project', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8'));
    expect(pkg.repository).toEqual({ type: 'git', url: 'git+https://github.com/conntrack-node/conntrack.git' });
    expect(pkg.homepage).toBe('https://github.com/conntrack-node/conntrack#readme');
    expect(pkg.bugs).toEqual({ url: 'https://github.com/conntrack-node/conntrack/issues' });
  });
});

describe('the prebuilds need no more than the README says', () => {
  test.each([
    ['x64', X64],
    ['arm64', ARM64],
  ])('%s: objdump -T shows the stated minimum glibc and no libstdc++ symbol versions', (_arch, file) => {
    const { max, cxx } = glibcNeeded(file);
    expect(max).toBe(readmeGlibc());
    expect(cxx).toEqual([]); // libstdc++ is linked in, so the system's (GCC 11 on RHEL 9) does not matter
    // The dynamic loader itself (ld-linux-*, for thread-local storage) is part of glibc.
    expect(neededLibraries(file).filter((l) => !l.startsWith('ld-linux'))).toEqual(['libc.so.6', 'libgcc_s.so.1', 'libmnl.so.0']);
  });
});

describe('load errors name the cause', () => {
  /** A copy of the user's project, changed by `change`, to break the install in one way. */
  function brokenCopy(name: string, change: (pkgDir: string) => void): string {
    const dir = path.join(tmp, name);
    fs.cpSync(app, dir, { recursive: true, verbatimSymlinks: true });
    change(path.join(dir, 'node_modules', 'conntrack'));
    return dir;
  }

  test('no binary for this platform: says which platforms are prebuilt and how to build from source', () => {
    const dir = brokenCopy('no-x64', (pkg) => fs.rmSync(path.join(pkg, 'prebuilds', 'linux-x64'), { recursive: true }));
    const result = JSON.parse(run('node', [path.join(dir, 'list.js')], { cwd: dir, env: bareEnv() }));
    expect(result).toMatchObject({ ok: false, code: 'ERR_NATIVE' });
    expect(result.message).toContain(`no binary for linux-${process.arch}`);
    expect(result.message).toContain(`Prebuilt platforms: linux-arm64 (glibc ${readmeGlibc()} or later)`);
    expect(result.message).toContain('install libmnl-dev, python3, make and g++');
    expect(result.message).toContain('npm rebuild conntrack --build-from-source');
  });

  test('libmnl missing: loading says to install libmnl0, and so does npm install, which succeeds without building', () => {
    // Hide libmnl.so.0 in a private mount namespace: an overlay whose whiteouts delete it.
    const lib = /libmnl\.so\.0 => (\S+)/.exec(run('ldd', [X64]))?.[1];
    if (!lib) throw new Error('libmnl.so.0 is not installed on this machine (apt-get install libmnl0)');
    const dir = fs.realpathSync(path.dirname(lib));
    const names = [...new Set([path.basename(lib), path.basename(fs.realpathSync(lib))])];
    const hide = path.join(tmp, 'hide');
    const fresh = path.join(tmp, 'no-libmnl');
    fs.mkdirSync(fresh);
    fs.writeFileSync(path.join(fresh, 'package.json'), JSON.stringify({ name: 'fresh', version: '1.0.0', private: true }));
    const script = [
      `mount -t tmpfs none ${hide}`,
      `mkdir ${hide}/upper ${hide}/work`,
      ...names.map((n) => `mknod ${hide}/upper/${n} c 0 0`),
      `mount -t overlay none -o lowerdir=${dir},upperdir=${hide}/upper,workdir=${hide}/work ${dir}`,
      `ldd ${X64} | grep libmnl`,
      `echo ---`,
      `node ${path.join(app, 'list.js')}`,
      `echo ---`,
      `cd ${fresh}`,
      `npm ${installArgs().join(' ')} --foreground-scripts 2>&1`,
      `echo ---`,
      `ls node_modules/conntrack`,
    ].join(' && ');
    fs.mkdirSync(hide);
    const out = run('unshare', ['-m', '--', 'sh', '-c', script], { cwd: app, env: { ...bareEnv(), PATH: `${bin}:/usr/sbin:/usr/bin:/sbin:/bin` } });
    const [lddLine, json, npmOutput, listing] = out.split('---\n');
    expect(lddLine).toMatch(/libmnl\.so\.0 => not found/);
    const result = JSON.parse(json);
    expect(result).toMatchObject({ ok: false, code: 'ERR_NATIVE' });
    expect(result.message).toContain('libmnl.so.0: cannot open shared object file');
    expect(result.message).toContain('Install the libmnl0 package');
    expect(result.message).toContain('apt-get install libmnl0');
    expect(npmOutput).toContain('conntrack: the prebuilt binary needs libmnl, which is not installed. Install the libmnl0 package');
    expect(npmOutput).not.toMatch(/gyp (ERR|info)/);
    expect(listing.split('\n')).toEqual(expect.arrayContaining(['dist', 'prebuilds']));
    expect(listing.split('\n')).not.toContain('build');
  });
});

const haveQemu = fs.existsSync(QEMU) && fs.existsSync(path.join(SYSROOT, 'usr', 'bin', 'node'));
if (!haveQemu) {
  console.warn(`arm64 load test skipped: needs ${QEMU} (apt-get install qemu-user-static) and an arm64 Node sysroot (scripts/arm64-node-sysroot.sh)`);
}

(haveQemu ? describe : describe.skip)('the arm64 prebuild under qemu-user with Debian arm64 Node.js', () => {
  test('require("conntrack") loads it and runs it up to the netlink socket, which qemu-user refuses', () => {
    const node = path.join(SYSROOT, 'usr', 'bin', 'node');
    const version = run(QEMU, ['-L', SYSROOT, node, '-p', 'process.arch + " " + process.versions.napi']).trim();
    expect(version).toMatch(/^arm64 \d+$/);
    const result = JSON.parse(run(QEMU, ['-L', SYSROOT, node, path.join(app, 'list.js')], { cwd: app, env: bareEnv() }));
    expect(result.mapped).toEqual([fs.realpathSync(path.join(installed, 'prebuilds', 'linux-arm64', PREBUILD))]);
    // qemu-user (linux-user/syscall.c) passes only NETLINK_ROUTE, NETLINK_KOBJECT_UEVENT and
    // NETLINK_AUDIT sockets to the kernel; NETLINK_NETFILTER fails in qemu itself. The error
    // comes from the addon's own socket() call, so the binary loaded and ran.
    expect(result).toMatchObject({ ok: false, code: 'EPROTONOSUPPORT', errno: 93 });
    expect(result.message).toMatch(/netlink socket/);
  });
});
