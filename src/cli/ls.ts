// longshore ls [--config FILE] [--json] [REPO]: what the cache and the private registry hold.
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { ConfigError, loadConfig, parseConfig } from '../config/load.js';
import { Inventory, parseRepositoryFilter, type RepositoryEntry } from '../lifecycle/inventory.js';
import { openStorage } from '../storage/open-storage.js';
import { formatBytes } from './progress.js';

export async function lsCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { config: { type: 'string', short: 'c' }, url: { type: 'string' }, json: { type: 'boolean' } },
    allowPositionals: true,
    strict: true,
  });
  if (values.url) throw new ConfigError('ls reads a data directory, not an API: give --config FILE of the server (safe while it runs)');
  if (positionals.length > 1) throw new ConfigError('ls takes at most one repository');
  const config = values.config ? await loadConfig(values.config) : parseConfig({}, process.env, 'defaults');
  // Read-only use: the staging area belongs to whichever server runs on this directory.
  const storage = await openStorage(config, pino({ level: 'warn' }), { ownsStaging: false });
  try {
    const repositories = await new Inventory(storage.metadata, storage.blobs).repositories(parseRepositoryFilter(positionals[0]));
    process.stdout.write(values.json ? `${JSON.stringify(repositories, null, 2)}\n` : table(repositories));
    return 0;
  } finally {
    await storage.close();
  }
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
