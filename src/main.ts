#!/usr/bin/env node
// The `longshore` command.
import { parseArgs } from 'node:util';
import { exportCommand, gcCommand, importCommand, warmCommand } from './cli/commands.js';
import { ConfigError, loadConfig, parseConfig } from './config/load.js';
import { createLogger } from './log.js';
import { startServer } from './server.js';

const USAGE = `usage: longshore <command> [options]

commands:
  serve  [--config FILE]                      run the mirror
  gc     [--config FILE] [--dry-run] [--grace 1h]
                                              delete blobs no manifest references
  warm   [--url URL | --config FILE] [--platform OS/ARCH[/VARIANT]]... [--all-platforms]
         [--file LIST] IMAGE...               pull images into the cache
  export [--url URL | --config FILE] [--platform ...]... -o BUNDLE.tar IMAGE...
                                              write images as an OCI layout tar
  import [--config FILE] BUNDLE.tar...        load bundles into the cache

Config: YAML (see config/default.yaml); every key can be overridden by LONGSHORE_* variables.
`;

async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } }, strict: true });
  const config = values.config ? await loadConfig(values.config) : parseConfig({}, process.env, 'defaults');
  const log = createLogger(config.logLevel);
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
  return new Promise<number>(() => undefined); // runs until a signal
}

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  serve,
  gc: gcCommand,
  warm: warmCommand,
  export: exportCommand,
  import: importCommand,
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '-h' || command === '--help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const run = COMMANDS[command];
  if (!run) throw new ConfigError(`unknown command "${command}"\n${USAGE}`);
  return run(rest);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    const usage = error instanceof ConfigError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS');
    console.error(usage ? `longshore: ${(error as Error).message}` : error);
    process.exit(usage ? 2 : 1);
  },
);
