#!/usr/bin/env node
// The `longshore` command.
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, parseConfig } from './config/load.js';
import { createLogger } from './log.js';
import { startServer } from './server.js';

const USAGE = `usage: longshore <command> [options]

commands:
  serve [--config FILE]   run the mirror (config: YAML, overridable by LONGSHORE_* env vars)
`;

async function serve(args: string[]): Promise<void> {
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
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return serve(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return;
    default:
      throw new ConfigError(`unknown command "${command}"\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  console.error(error instanceof ConfigError ? `longshore: ${error.message}` : error);
  process.exit(error instanceof ConfigError ? 2 : 1);
});
