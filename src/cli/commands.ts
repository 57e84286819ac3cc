// The `longshore` subcommands other than serve: gc, warm, export, import.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { ConfigError, loadConfig, parseConfig } from '../config/load.js';
import { parseDuration } from '../config/units.js';
import type { Config } from '../config/schema.js';
import { exportBundle } from '../lifecycle/bundle-export.js';
import { importBundle, openImportTargets } from '../lifecycle/bundle-import.js';
import { collectGarbage } from '../lifecycle/gc.js';
import { DEFAULT_PLATFORMS, type PlatformChoice } from '../lifecycle/image-walker.js';
import { withMirror, type MirrorTarget } from '../lifecycle/mirror-client.js';
import { credentialsFor, parseCreds } from './credentials.js';
import { warmImage } from '../lifecycle/warm.js';
import { parseImageRef, parsePlatform, type ImageRef } from '../protocol/image-ref.js';
import { openStorage } from '../storage/open-storage.js';
import { createProgress, formatBytes } from './progress.js';

const DEFAULT_GC_GRACE = '1h';

async function configFrom(file: string | undefined): Promise<Config> {
  return file ? loadConfig(file) : parseConfig({}, process.env, 'defaults');
}

function platformChoice(platforms: string[] | undefined, all: boolean | undefined, fallback: PlatformChoice): PlatformChoice {
  if (all && platforms?.length) throw new ConfigError('--platform and --all-platforms exclude each other');
  if (all) return { all: true };
  if (platforms?.length) return { all: false, platforms: platforms.map(parsePlatform) };
  return fallback;
}

async function imageRefs(positionals: string[], listFile: string | undefined): Promise<ImageRef[]> {
  const names = [...positionals];
  if (listFile) {
    const text = await readFile(listFile, 'utf8');
    names.push(...text.split('\n').map((l) => l.replace(/#.*/, '').trim()).filter(Boolean));
  }
  if (names.length === 0) throw new ConfigError('name at least one image (or --file LIST)');
  return names.map((name) => {
    try {
      return parseImageRef(name);
    } catch (error) {
      throw new ConfigError((error as Error).message);
    }
  });
}

const mirrorOptions = {
  url: { type: 'string' },
  config: { type: 'string', short: 'c' },
  platform: { type: 'string', multiple: true },
  'all-platforms': { type: 'boolean' },
  file: { type: 'string' },
  creds: { type: 'string' },
} as const;

/** --creds USER:PASS, else the docker/podman login stored for the mirror's host. */
function credentialsFrom(creds: string | undefined): MirrorTarget['credentials'] {
  if (creds !== undefined) parseCreds(creds); // a malformed value is refused before any work starts
  return (url) => credentialsFor(creds, url);
}

/** longshore gc [--config FILE] [--dry-run] [--grace 1h] */
export async function gcCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, 'dry-run': { type: 'boolean' }, grace: { type: 'string' } }, strict: true });
  const graceMs = parseDuration(values.grace ?? DEFAULT_GC_GRACE);
  if (graceMs === undefined) throw new ConfigError(`--grace: not a duration: "${values.grace}"`);
  const config = await configFrom(values.config);
  // The storage ports alone: gc may run beside a server, so it leaves the staging area to it.
  const storage = await openStorage(config, pino({ level: 'warn' }), { ownsStaging: false });
  try {
    const report = await collectGarbage({ ...storage, events: storage.coordinator.events }, { dryRun: values['dry-run'] ?? false, graceMs });
    const verb = report.dryRun ? 'would remove' : 'removed';
    process.stdout.write(
      `gc${report.dryRun ? ' (dry run)' : ''}: scanned ${report.scannedBlobs} blobs, kept ${report.keptBlobs}, ${verb} ${report.removedBlobs.length} ` +
        `(${formatBytes(report.freedBytes)}), ${verb} ${report.removedRecords} stale records and ${report.removedTempFiles} temp files\n`,
    );
    for (const blob of report.removedBlobs) {
      process.stdout.write(`  ${verb} ${blob.digest} ${formatBytes(blob.size)}${blob.private ? ' (private: no repository links it)' : ''}\n`);
    }
    return 0;
  } finally {
    await storage.close();
  }
}

/** longshore warm [--url URL | --config FILE] [--platform P]... [--all-platforms] [--file LIST] IMAGE... */
export async function warmCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: mirrorOptions, allowPositionals: true, strict: true });
  // Without either, warm would start a server from defaults with no upstreams and fetch nothing.
  if (!values.url && !values.config) throw new ConfigError('warm needs --url URL of a running Longshore or --config FILE of one to start');
  const refs = await imageRefs(positionals, values.file);
  const platforms = platformChoice(values.platform, values['all-platforms'], DEFAULT_PLATFORMS);
  const config = values.url ? undefined : await configFrom(values.config);
  const progress = createProgress(process.stdout);
  const results = await withMirror({ url: values.url, config, credentials: credentialsFrom(values.creds) }, async (client) => {
    const out = [];
    for (const ref of refs) out.push(await warmImage(client, ref, platforms, progress));
    return out;
  });
  progress.finish();
  return results.some((r) => r.error) ? 1 : 0;
}

/** longshore export [--url URL | --config FILE] [--platform P]... -o bundle.tar IMAGE... */
export async function exportCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { ...mirrorOptions, output: { type: 'string', short: 'o' } },
    allowPositionals: true,
    strict: true,
  });
  if (!values.output) throw new ConfigError('export needs -o FILE');
  const refs = await imageRefs(positionals, values.file);
  // A bundle is for another site: all platforms unless told otherwise.
  const platforms = platformChoice(values.platform, values['all-platforms'], { all: true });
  const config = values.url ? undefined : await configFrom(values.config);
  const progress = createProgress(process.stdout);
  const result = await withMirror({ url: values.url, config, credentials: credentialsFrom(values.creds) }, (client) => exportBundle(client, refs, platforms, values.output as string, progress));
  progress.finish();
  const failed = result.images.filter((i) => i.error);
  if (failed.length > 0) {
    process.stderr.write(`export failed for ${failed.map((f) => f.image).join(', ')}; no bundle written\n`);
    return 1;
  }
  process.stdout.write(`wrote ${values.output}: ${result.images.length} images, ${formatBytes(result.bytes)} of blobs\n`);
  return 0;
}

/** longshore import [--config FILE] BUNDLE... */
export async function importCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } }, allowPositionals: true, strict: true });
  if (positionals.length === 0) throw new ConfigError('name at least one bundle file');
  const config = await configFrom(values.config);
  const targets = await openImportTargets(config, pino({ level: 'warn' }));
  const progress = createProgress(process.stdout, { unit: 'bundles' });
  let failures = 0;
  try {
    for (const file of positionals) {
      try {
        const result = await importBundle(file, targets, progress);
        process.stdout.write(`imported ${file}: ${result.tags.length} images, ${result.blobs} blobs (${formatBytes(result.bytes)}), tags: ${result.tags.join(', ') || 'none'}\n`);
      } catch (error) {
        failures += 1;
        process.stderr.write(`${(error as Error).message}; nothing imported from it\n`);
      }
    }
  } finally {
    progress.finish();
    await targets.close({ changed: failures < positionals.length });
  }
  return failures > 0 ? 1 : 0;
}
