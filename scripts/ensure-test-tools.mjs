#!/usr/bin/env node
// Makes sure the external programs the end-to-end tests drive are installed.
// With --bench, also the ones `npm run bench` compares against and drives (bench/run.ts).
// The tests also check (test/harness/tools.ts) and fail with the install command, but running
// this first (npm test, CI) turns "tests fail" into "tools get installed" where we are root.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

// Tool on PATH -> Debian package that provides it. Add new tools here.
const REQUIRED_TOOLS = {
  'docker-registry': 'docker-registry',
  skopeo: 'skopeo',
  htpasswd: 'apache2-utils',
  prometheus: 'prometheus',
  podman: 'podman',
  // Deployment tests: a private CA, nginx terminating TLS with it, an outbound forward proxy.
  openssl: 'openssl',
  nginx: 'nginx',
  tinyproxy: 'tinyproxy',
  // OpenStack Swift with s3api, the real S3 server (test/harness/swift.ts); memcached holds
  // tempauth's tokens. --no-install-recommends (below) matters: the recommends pull in a desktop.
  'swift-proxy-server': 'swift-proxy',
  'swift-account-server': 'swift-account',
  'swift-container-server': 'swift-container',
  'swift-object-server': 'swift-object',
  memcached: 'memcached',
  // The shared coordinator of several replicas (test/harness/redis.ts).
  'redis-server': 'redis-server',
  chromium: 'chromium', // the web page's end-to-end test drives it (playwright-core)
};
const BENCH_TOOLS = {
  'docker-registry': 'docker-registry',
  nginx: 'nginx',
  wrk: 'wrk',
  curl: 'curl',
};
const forBench = process.argv.includes('--bench');
const TOOLS = forBench ? BENCH_TOOLS : REQUIRED_TOOLS;
const label = forBench ? 'ensure-bench-tools' : 'ensure-test-tools';

function isOnPath(command) {
  // nginx lives in /usr/sbin, which a non-root PATH may lack.
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin'].filter((dir) => dir !== '');
  return dirs.some((dir) => {
    try {
      accessSync(join(dir, command), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function missingTools() {
  return Object.entries(TOOLS).filter(([command]) => !isOnPath(command));
}

function run(command, args) {
  console.log(`${label}: ${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (result.error !== undefined) {
    throw new Error(`${command} ${args.join(' ')} could not be started: ${result.error.message}`);
  }
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited with ${result.status ?? `signal ${result.signal}`}`);
  }
}

const missing = missingTools();
if (missing.length === 0) {
  console.log(`${label}: all present (${Object.keys(TOOLS).join(', ')})`);
  process.exit(0);
}

const packages = [...new Set(missing.map(([, pkg]) => pkg))];
const missingNames = missing.map(([command]) => command).join(', ');
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
if (!isRoot) {
  console.error(`missing tools: ${missingNames}; install them with: sudo apt-get install -y ${packages.join(' ')}`);
  process.exit(1);
}

try {
  run('apt-get', ['update']);
  run('apt-get', ['install', '-y', '--no-install-recommends', ...packages]);
} catch (error) {
  console.error(`${label}: installing ${packages.join(' ')} failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}

const stillMissing = missingTools();
if (stillMissing.length > 0) {
  console.error(`${label}: still missing after install: ${stillMissing.map(([command]) => command).join(', ')}`);
  process.exit(1);
}
console.log(`${label}: installed ${packages.join(' ')}; all present`);
