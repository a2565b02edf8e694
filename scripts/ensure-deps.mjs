// Shared by the two Quick-start commands: makes a fresh clone runnable with no other step.
// npm packages come from package-lock.json (npm ci); system packages from install-system-deps.sh.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function run(cmd, args, what) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`ttt-web: ${what} failed (${cmd} ${args.join(' ')} exited with ${r.status ?? r.signal})`);
    process.exit(r.status ?? 1);
  }
}

/** npm ci when node_modules is missing or older than package-lock.json. */
export function ensureNodeModules() {
  const marker = join(root, 'node_modules', '.package-lock.json');
  const lock = join(root, 'package-lock.json');
  const stale = !existsSync(marker) || statSync(marker).mtimeMs < statSync(lock).mtimeMs;
  if (stale) {
    console.error('ttt-web: installing npm packages from package-lock.json (npm ci)');
    run('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], 'npm ci');
  }
}

/** The system packages tests need (chromium, lavapipe); the script installs them as root on Debian, else explains and fails. */
export function ensureSystemPackages() {
  run('bash', [join(root, 'scripts', 'install-system-deps.sh')], 'installing system packages');
}

export function readJson(path) {
  return JSON.parse(readFileSync(path, 'utf8'));
}
