#!/usr/bin/env -S node --max-semi-space-size=2
// The `longshore` command.
//
// The flags above are the ones Longshore ships with: `npm start`, the container image and the
// installed `longshore` command all run this file through its shebang. Young-generation
// semi-spaces of 2 MiB instead of V8's 16 MiB: the young generation is then ~4 MB instead of
// ~34 MB once traffic has grown it, which kept peak RSS over 150 MB during 16 concurrent hits
// (bench: 167 -> 127 MB), and measured no slower (hits, manifests by tag, cold misses).
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { exportCommand, gcCommand, importCommand, warmCommand } from './cli/commands.js';
import { lsCommand } from './cli/ls.js';
import { COMMAND_USAGE, USAGE } from './cli/usage.js';
import { ConfigError, loadConfig, parseConfig, type ConfigWarning } from './config/load.js';
import { createLogger } from './log.js';
import { startServer, StartupError } from './server.js';

/** Exit status for a command line that cannot be run as given (as getopt tools use). */
const EXIT_USAGE = 2;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } }, strict: true });
  // The logger needs the config's level: warnings found while reading it are logged after.
  const warnings: Array<Parameters<ConfigWarning>> = [];
  const collect: ConfigWarning = (message, details) => warnings.push([message, details]);
  const config = values.config ? await loadConfig(values.config, process.env, collect) : parseConfig({}, process.env, 'defaults', collect);
  const log = createLogger(config.logLevel);
  for (const [message, details] of warnings) log.warn(details, message);
  const server = await startServer(config, log);
  const shutdown = (signal: string) => {
    log.info({ signal }, 'shutting down');
    server.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGHUP', () => {
    log.info({ signal: 'SIGHUP' }, 'reloading TLS certificate');
    void server.reloadTls();
  });
  return new Promise<number>(() => undefined); // runs until a signal
}

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  serve,
  gc: gcCommand,
  warm: warmCommand,
  export: exportCommand,
  import: importCommand,
  ls: lsCommand,
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '--version' || command === '-v' || command === 'version') {
    process.stdout.write(`longshore ${version()}\n`);
    return 0;
  }
  if (command === 'help' || command === '-h' || command === '--help') {
    const topic = rest[0] === undefined ? undefined : COMMAND_USAGE[rest[0]];
    process.stdout.write(topic ?? USAGE);
    return 0;
  }
  if (command === undefined) {
    process.stderr.write(USAGE);
    return EXIT_USAGE;
  }
  const run = COMMANDS[command];
  if (!run) throw new ConfigError(`unknown command "${command}"\n${USAGE}`);
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(COMMAND_USAGE[command] ?? USAGE);
    return 0;
  }
  return run(rest);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    const usage = error instanceof ConfigError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    if (usage) {
      console.error(`longshore: ${(error as Error).message}`);
      process.exit(EXIT_USAGE);
    }
    // Operator-fixable start-up failures are one line; anything else keeps its stack for a bug report.
    console.error(error instanceof StartupError ? `longshore: cannot start: ${error.message}` : error);
    process.exit(1);
  },
);
