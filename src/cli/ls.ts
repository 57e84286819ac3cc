// longshore ls [--url URL [--creds USER:PASS] | --config FILE] [--json] [REPO]: what the cache
// and the private registry hold, read from a running server's API or from its data directory,
// written by one formatter either way.
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { ConfigError, loadConfig, parseConfig } from '../config/load.js';
import { Inventory, parseRepositoryFilter, type RepositoryEntry } from '../lifecycle/inventory.js';
import { RemoteInventory, RemoteInventoryError } from '../lifecycle/remote-inventory.js';
import { openStorage } from '../storage/open-storage.js';
import { credentialsFor } from './credentials.js';
import { formatBytes } from './progress.js';

export async function lsCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { config: { type: 'string', short: 'c' }, url: { type: 'string' }, creds: { type: 'string' }, json: { type: 'boolean' } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length > 1) throw new ConfigError('ls takes at most one repository');
  if (values.url && values.config) throw new ConfigError('ls takes --url URL or --config FILE, not both');
  if (values.creds && !values.url) throw new ConfigError('--creds goes with --url (with --config, ls reads the data directory)');
  const only = parseRepositoryFilter(positionals[0]);
  if (values.url) {
    let repositories: RepositoryEntry[];
    try {
      const credentials = await credentialsFor(values.creds, values.url);
      repositories = await (await RemoteInventory.open(values.url, credentials)).repositories(only);
      if (repositories.length === 0 && !credentials) process.stderr.write('longshore: nothing listed that anonymous users may pull; private repositories need --creds USER:PASS (or docker login)\n');
    } catch (error) {
      if (!(error instanceof RemoteInventoryError)) throw error;
      process.stderr.write(`longshore: ls: ${error.message}\n`);
      return 1;
    }
    process.stdout.write(format(repositories, values.json ?? false));
    return 0;
  }
  const config = values.config ? await loadConfig(values.config) : parseConfig({}, process.env, 'defaults');
  // Read-only use: the staging area belongs to whichever server runs on this directory.
  const storage = await openStorage(config, pino({ level: 'warn' }), { ownsStaging: false });
  try {
    process.stdout.write(format(await new Inventory(storage.metadata, storage.blobs).repositories(only), values.json ?? false));
    return 0;
  } finally {
    await storage.close();
  }
}

function format(repositories: RepositoryEntry[], json: boolean): string {
  return json ? `${JSON.stringify(repositories, null, 2)}\n` : table(repositories);
}

function table(repositories: RepositoryEntry[]): string {
  const rows = [['REPOSITORY', 'TAG', 'SIZE', 'LAST PULL', 'SOURCE']];
  for (const repository of repositories) {
    const source = repository.kind === 'mirrored' ? `mirrored (${repository.upstream})` : 'private';
    const name = repository.kind === 'mirrored' ? `${repository.upstream}/${repository.name}` : repository.name;
    if (repository.tags.length === 0) rows.push([name, '-', '-', '-', source]);
    for (const tag of repository.tags) rows.push([name, tag.tag, formatBytes(tag.bytes), tag.lastPull?.replace(/\.\d+Z$/, 'Z') ?? '-', source]);
  }
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ')).join('\n') + '\n';
}
