// TarSum version 0, the layer checksum v1 clients send in `X-Docker-Checksum` (spec §6):
//   per entry: sha256("name"+name + "mode"+mode + "uid"+uid + "gid"+gid + "size"+size +
//              "mtime"+unixSeconds + "typeflag"+char + "linkname"+… + "uname"+… + "gname"+… +
//              "devmajor"+… + "devminor"+… + content), as lower-case hex;
//   sum: "tarsum+sha256:" + hex(sha256(imageJson + concat(sort(entryHashes)))).
// Computed while the layer streams in (gzip or plain tar), so nothing is buffered whole.
// Later moby releases blank uname/gname before hashing (to stay stable across Go's tar
// changes), so a sum with blanked names is accepted too; for layers Docker wrote itself the
// names are empty and both readings are one.
import { createHash, type Hash } from 'node:crypto';
import { posix } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';

const TYPEFLAG: Record<string, string> = {
  file: '0',
  link: '1',
  symlink: '2',
  'character-device': '3',
  'block-device': '4',
  directory: '5',
  fifo: '6',
  'contiguous-file': '7',
};

interface EntryHeader {
  name: string;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  mtime?: Date;
  type?: string | null;
  linkname?: string | null;
  uname?: string;
  gname?: string;
  devmajor?: number;
  devminor?: number;
  pax?: Record<string, string> | null;
}

/** Names are read as latin1 so every byte survives; PAX records are UTF-8 by definition. */
function rawString(value: string | null | undefined, fromPax: boolean): Buffer {
  return Buffer.from(value ?? '', fromPax ? 'utf8' : 'latin1');
}

function headerBytes(header: EntryHeader, blankNames: boolean): Buffer {
  const pax = header.pax ?? {};
  const num = (paxKey: string, value: number | undefined) => String(pax[paxKey] !== undefined ? Math.trunc(Number(pax[paxKey])) : (value ?? 0));
  const mtimeSeconds = pax.mtime !== undefined ? Math.floor(Number(pax.mtime)) : Math.floor((header.mtime?.getTime() ?? 0) / 1000);
  const typeflag = TYPEFLAG[header.type ?? ''];
  if (typeflag === undefined) throw new Error(`tar entry "${header.name}" has a type TarSum cannot name (${String(header.type)})`);
  const text = (key: string, value: string) => Buffer.from(key + value, 'utf8');
  return Buffer.concat([
    Buffer.from('name'),
    rawString(header.name, pax.path !== undefined),
    text('mode', String(header.mode ?? 0)),
    text('uid', num('uid', header.uid)),
    text('gid', num('gid', header.gid)),
    text('size', String(header.size ?? 0)),
    text('mtime', String(mtimeSeconds)),
    text('typeflag', typeflag),
    Buffer.from('linkname'),
    rawString(header.linkname, pax.linkpath !== undefined),
    text('uname', blankNames ? '' : (pax.uname ?? header.uname ?? '')),
    text('gname', blankNames ? '' : (pax.gname ?? header.gname ?? '')),
    text('devmajor', String(header.devmajor ?? 0)),
    text('devminor', String(header.devminor ?? 0)),
  ]);
}

interface EntrySum {
  /** Normalised path; only orders entries that share a path. */
  name: string;
  /** As moby's v0 hashes it; and with uname/gname blanked (later moby). */
  classic: string;
  blankedNames: string;
}

/** Entry hashes of a layer, in archive order; `tarSums` combines them with the image JSON. */
export interface TarSumResult {
  entries: EntrySum[];
}

/**
 * Every `tarsum+sha256:` value a client may have computed for this layer and JSON: with or
 * without uname/gname, and, when a path repeats, in both orders moby can produce (its
 * comparator orders equal paths by position, which only Go's insertion sort honours).
 */
export function tarSums(result: TarSumResult, imageJson: Uint8Array): string[] {
  const sums = new Set<string>();
  const hasDuplicates = new Set(result.entries.map((e) => e.name)).size !== result.entries.length;
  for (const variant of ['classic', 'blankedNames'] as const) {
    const orders = [[...result.entries].sort((x, y) => compare(x[variant], y[variant]))];
    if (hasDuplicates) orders.push(goInsertionSort(result.entries, variant));
    for (const order of orders) {
      const hash = createHash('sha256').update(imageJson);
      for (const entry of order) hash.update(entry[variant]);
      sums.add(`tarsum+sha256:${hash.digest('hex')}`);
    }
  }
  return [...sums];
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** sort.Sort over moby's bySum for ≤12 elements (Go's insertion sort), position as tie-break. */
function goInsertionSort(entries: readonly EntrySum[], variant: 'classic' | 'blankedNames'): EntrySum[] {
  const items = entries.map((entry, pos) => ({ entry, pos }));
  const less = (i: number, j: number) => {
    const a = items[i] as { entry: EntrySum; pos: number };
    const b = items[j] as { entry: EntrySum; pos: number };
    return a.entry.name === b.entry.name ? a.pos < b.pos : a.entry[variant] < b.entry[variant];
  };
  for (let i = 1; i < items.length; i++) {
    for (let j = i; j > 0 && less(j, j - 1); j--) {
      [items[j], items[j - 1]] = [items[j - 1] as (typeof items)[number], items[j] as (typeof items)[number]];
    }
  }
  return items.map((item) => item.entry);
}

/** moby's `path.Join(".", path.Join("/", name))`: no leading "./" or "/", no trailing "/". */
function normalisedName(name: string): string {
  const cleaned = posix.normalize(`/${name}`).replace(/\/+$/, '').replace(/^\/+/, '');
  return cleaned === '' ? '.' : cleaned;
}

/**
 * Consumes a layer (gzip-compressed or plain tar) and resolves with its entry hashes.
 * Rejects when the bytes are not a readable tar archive.
 */
export async function computeTarSum(layer: AsyncIterable<Buffer>): Promise<TarSumResult> {
  const entries: EntrySum[] = [];
  const extract = tar.extract({ filenameEncoding: 'latin1' } as Parameters<typeof tar.extract>[0]);
  extract.on('entry', (entryHeader, body, next) => {
    const header = entryHeader as unknown as EntryHeader;
    let hashes: Hash[];
    try {
      const withNames = headerBytes(header, false);
      const blanked = headerBytes(header, true);
      hashes = withNames.equals(blanked) ? [createHash('sha256').update(withNames)] : [createHash('sha256').update(withNames), createHash('sha256').update(blanked)];
    } catch (error) {
      body.resume();
      next(error as Error);
      return;
    }
    body.on('data', (chunk) => {
      for (const hash of hashes) hash.update(chunk as Buffer);
    });
    body.once('end', () => {
      const [first, second] = hashes.map((h) => h.digest('hex')) as [string, string | undefined];
      entries.push({ name: normalisedName(header.name), classic: first, blankedNames: second ?? first });
      next();
    });
    body.once('error', (error) => next(error));
  });
  // Sniff gzip's magic bytes, then replay what was read ahead of the rest of the stream.
  const iterator = layer[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let headLength = 0;
  let exhausted = false;
  while (headLength < 2) {
    const next = await iterator.next();
    if (next.done) {
      exhausted = true;
      break;
    }
    head.push(next.value);
    headLength += next.value.length;
  }
  async function* replay(): AsyncGenerator<Buffer> {
    yield* head;
    while (!exhausted) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  }
  const start = Buffer.concat(head);
  const source = Readable.from(replay());
  if (start[0] === 0x1f && start[1] === 0x8b) await pipeline(source, createGunzip(), extract);
  else await pipeline(source, extract);
  return { entries };
}

/**
 * Feeds a layer to computeTarSum while it is being stored: `write` respects backpressure,
 * and once the archive proved unreadable further bytes are dropped rather than queued.
 */
export class TarSumCalculator {
  private readonly input = new PassThrough();
  private readonly result: Promise<TarSumResult | Error>;
  private failed = false;

  constructor() {
    this.result = computeTarSum(this.input).catch((error: unknown) => {
      this.failed = true;
      this.input.resume(); // drain, so a writer waiting for 'drain' is released
      return error instanceof Error ? error : new Error(String(error));
    });
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.failed || this.input.destroyed) return;
    if (!this.input.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.input.off('drain', done);
          this.input.off('close', done);
          resolve();
        };
        this.input.on('drain', done);
        this.input.on('close', done);
        void this.result.then(done);
      });
    }
  }

  /** The entry hashes, or why the layer is not a tar archive TarSum can read. */
  async end(): Promise<TarSumResult | Error> {
    if (!this.input.destroyed) this.input.end();
    return this.result;
  }

  /** Stops computing (the upload failed). */
  abort(): void {
    this.input.destroy();
  }
}
