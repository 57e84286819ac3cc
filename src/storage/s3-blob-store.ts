// S3 BlobStore: blobs are objects at <prefix>blobs/<algorithm>/<2 hex>/<hex>, the fs layout, so
// an operator can audit a bucket by hashing objects against their keys. Nothing else is ever
// stored under blobs/, and nothing there is ever partial or unverified:
//
// - A write goes to a local scratch file first (the fs driver's writer, in storage.path), which
//   hashes the bytes and which followers of an in-flight fetch read (readAt). Full parts are
//   uploaded behind the writes, as parts of a multipart upload streamed from that file: one at
//   a time while bytes still arrive, several once they are all in and verified.
// - Blob reads (hits) are GETs presigned by the SDK and sent with undici (see getObject).
// - Parts are invisible until the upload is completed, and it is completed under the blob's
//   key only after the digest checked out; otherwise it is aborted. A blob smaller than one
//   part is one PutObject after the check.
// - A writer whose digest is learned only at the end (pushes, v1 layers) uploads to a key under
//   <prefix>staging/ and copies it server-side to the blob's key once the digest is known.
// - A killed process leaves at most incomplete multipart uploads and staging objects, which
//   sweepStaging (start-up and gc) removes after a grace period.
//
// - With redirects on (storage.s3.redirect), open() only HEADs the object: the HTTP layer answers
//   a GET with a 307 to a presigned GET URL of it (redirectUrl), as the reference registry's s3
//   driver does, and the bytes go from the bucket to the client without passing through here.
//
// What this needs from an S3 server: GET with Range, HEAD, PUT, DELETE, ListObjectsV2,
// multipart uploads (create, upload part, complete, abort, list), CopyObject, and presigned
// (query-string, SigV4) GETs. No conditional writes (Swift's s3api
// refuses them) and no checksums beyond Content-MD5 on DeleteObjects.
import { randomUUID } from 'node:crypto';
import { PassThrough, Readable, pipeline, type Writable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3ServiceException,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Agent, request } from 'undici';
import { createDigester, tryParseDigest, type Digest, type DigestAlgorithm } from '../protocol/digest.js';
import { READ_CHUNK_BYTES, DigestMismatchError, readIntoBuffer, writeChunk, type BlobHandle, type BlobStore, type BlobWriter, type ByteRange, type StoredBlob } from './blob-store.js';
import { FsBlobStore } from './fs-blob-store.js';
import { DEFAULT_SPARE_SCRATCH_BYTES } from './spare-files.js';
import { S3BucketUnusable } from './s3-errors.js';
import { SharedReads, type SharedReadHandle } from './shared-reads.js';
import { ByteWindow, writeBody } from './write-body.js';
import { ChangeSignal } from '../util/deferred.js';

/** S3's minimum part size (all parts but the last); also what Swift's s3api enforces. */
export const MIN_PART_BYTES = 5 * 1024 * 1024;
// 8 MiB parts: the blob is published (and its fetch settles) only once the commit uploaded the
// last part (up to this size) and completed, so smaller parts mean a shorter tail; 10,000 parts still allow
// blobs of 78 GiB.
const DEFAULT_PART_BYTES = 8 * 1024 * 1024;
// CopyObject copies at most 5 GiB; larger staged blobs are copied as parts (UploadPartCopy) of
// this size.
const MAX_SINGLE_COPY_BYTES = 5 * 1024 * 1024 * 1024;
// Parts of one blob in flight at once once every byte is in (the writer verified, an upload
// suspended between chunks): 100 MiB to Swift s3api on a loaded 2-CPU box went 17-35 MB/s with
// 2 parts in flight, 31-55 MB/s with 4 or 6 (8, 16 and 32 MiB parts alike, within the noise).
const PARTS_IN_FLIGHT = 4;
// While bytes are still being written, a part goes up alongside them only when it filled
// slowly: its bytes took at least SLOW_PART_FILL_MS to arrive (8 MiB parts: below 64 MiB/s, a
// pull over a WAN), so the network, not the CPU, is what the client waits for, and the blob is
// in the bucket soon after its last byte. A part that filled faster waits in the scratch file
// (on disk, bounded by the blob's size, which hasRoomFor checked) until the digest checked out,
// then goes with the rest at full parallelism. On the bench's loaded 2-CPU machine (Swift's
// Python proxy shares the cores; upstream on loopback), one part in flight during a 200 MiB
// download made the cold miss 2.77 s for the client and 3.11 s until stored; waiting made it
// 1.03 s and 2.41 s (`npm run bench -- --only s3`, medians of 3, one after the other).
// Four at once during the download had been worse still (4.05x the reference's client time).
const PARTS_IN_FLIGHT_WHILE_WRITING = 1;
export const SLOW_PART_FILL_MS = 125;
// How many slow parts in a row it takes, the first part not counted: its time includes the
// download's start. On the bench (`npm run bench -- --only s3`, one run, with each part's fill
// time logged) the first 8 MiB of a download took 86-243 ms, later parts 9-103 ms. The one cold
// miss whose first two parts counted as slow (the second filled while the first was uploading)
// took 1.15 s for its client; the two others 0.80 and 0.81 s. Two in a row, so that one hiccup
// (a GC pause, a busy core) does not start uploads either.
export const SLOW_PARTS_IN_A_ROW = 2;
// Object GETs are presigned for this long: they are sent at once, so only clock skew matters.
const PRESIGNED_READ_TTL_SECONDS = 5 * 60;
// Every hit being served holds one connection for as long as its client reads.
const MAX_READ_CONNECTIONS = 512;
const READ_HEADERS_TIMEOUT_MS = 60_000;
// An S3 error answer is a short XML document: this much of it goes into the message.
const MAX_ERROR_BODY_BYTES = 2048;
// What start-up leaves alone: another replica sharing the bucket may still be uploading.
const DEFAULT_STARTUP_SWEEP_GRACE_MS = 24 * 60 * 60_000;

export interface S3Location {
  client: S3Client;
  bucket: string;
  /** "" or a prefix ending in "/" under which everything of this store lives. */
  prefix: string;
}

export interface S3BlobStoreOptions extends S3Location {
  /** Local directory for scratch files (in-progress writes); storage.path. */
  scratchDir: string;
  /** Bytes of finished scratch files kept for reuse (storage.s3.spareScratchBytes); 0: none. */
  spareScratchBytes?: number;
  partBytes?: number;
  /** Above this size a staged blob is copied to its key part by part (tests lower it). */
  maxSingleCopyBytes?: number;
  /** Staged writes older than this are swept at start-up (when the store owns staging). */
  startupSweepGraceMs?: number;
  /** For messages: where the bucket is (endpoint or "AWS"). */
  describeEndpoint?: string;
  /**
   * Set (storage.s3.redirect): handles offer presigned GET URLs valid this long, and open()
   * HEADs instead of starting a GET the redirected client would make anyway.
   */
  redirectUrlTtlSeconds?: number;
}

/** A ranged GET found the object gone (deleted since the handle was opened). */
class S3ObjectGone extends Error {
  constructor(readonly key: string) {
    super(`S3 object ${key} is gone`);
    this.name = 'S3ObjectGone';
  }
}

/** Error thrown by the SDK for a missing object: NoSuchKey on GET, NotFound on HEAD. */
export function isS3NotFound(error: unknown): boolean {
  if (error instanceof S3ObjectGone) return true;
  return error instanceof S3ServiceException && (error.name === 'NoSuchKey' || error.name === 'NotFound' || error.$metadata.httpStatusCode === 404);
}

/** The start of a response body as text, at most `maxBytes` of it; the rest is dropped. */
async function boundedText(body: Readable, maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    length += chunk.byteLength;
    if (length >= maxBytes) break;
  }
  body.destroy();
  return Buffer.concat(chunks).subarray(0, maxBytes).toString('utf8');
}

function isNoSuchUpload(error: unknown): boolean {
  return error instanceof S3ServiceException && (error.name === 'NoSuchUpload' || error.$metadata.httpStatusCode === 404);
}

/** Every key of a listing under `prefix`, page by page. */
export async function* listKeys(location: S3Location, prefix: string): AsyncGenerator<{ key: string; size: number; lastModified: number }> {
  let token: string | undefined;
  do {
    const page = await location.client.send(new ListObjectsV2Command({ Bucket: location.bucket, Prefix: prefix, ContinuationToken: token }));
    for (const entry of page.Contents ?? []) {
      if (entry.Key !== undefined) yield { key: entry.Key, size: entry.Size ?? 0, lastModified: entry.LastModified?.getTime() ?? 0 };
    }
    token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
  } while (token !== undefined);
}

export class S3BlobStore implements BlobStore {
  /** The client every request of this store (and of the metadata driver beside it) goes through. */
  readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly partBytes: number;
  private readonly scratch: FsBlobStore;
  private readonly live = new Set<S3BlobWriter>();
  /** Concurrent whole-object hits of one blob share one GET (storage/shared-reads.ts). */
  private readonly sharedReads: SharedReads;
  /** Connections for object GETs (hits), which go through undici with presigned URLs. */
  private readonly objectReads = new Agent({
    connections: MAX_READ_CONNECTIONS,
    // A hit streams at its client's pace: no limit on a pause in the body.
    bodyTimeout: 0,
    headersTimeout: READ_HEADERS_TIMEOUT_MS,
  });

  constructor(private readonly options: S3BlobStoreOptions) {
    this.client = options.client;
    this.bucket = options.bucket;
    this.prefix = options.prefix;
    this.partBytes = options.partBytes ?? DEFAULT_PART_BYTES;
    if (this.partBytes < MIN_PART_BYTES) throw new Error(`S3 part size ${this.partBytes} is below S3's minimum of ${MIN_PART_BYTES} bytes`);
    // Every scratch file ends aborted (its bytes are in the bucket, or thrown away): kept as a
    // spare, the next one writes over its pages instead of new ones.
    this.scratch = new FsBlobStore(options.scratchDir, { spareBytes: options.spareScratchBytes ?? DEFAULT_SPARE_SCRATCH_BYTES });
    this.sharedReads = new SharedReads(this.scratch);
  }

  /** Shared reads in progress: their GET running, or readers still on the scratch copy. */
  get sharedReadCount(): number {
    return this.sharedReads.count;
  }

  private get where(): string {
    return `bucket "${this.bucket}"${this.options.describeEndpoint ? ` at ${this.options.describeEndpoint}` : ''}`;
  }

  /** The object key of a committed blob. */
  blobKey(digest: Digest): string {
    return `${this.prefix}blobs/${digest.algorithm}/${digest.hex.slice(0, 2)}/${digest.hex}`;
  }

  private get stagingPrefix(): string {
    return `${this.prefix}staging/`;
  }

  async init(options: { clearStaging?: boolean } = {}): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (error) {
      throw new S3BucketUnusable(`S3 ${this.where} is not reachable: ${describeS3Error(error)}; check storage.s3 (endpoint, bucket, credentials)`, { cause: error });
    }
    await this.scratch.init(options);
    if (options.clearStaging ?? true) {
      await this.sweepStaging({ olderThanMs: this.options.startupSweepGraceMs ?? DEFAULT_STARTUP_SWEEP_GRACE_MS });
    }
  }

  async stat(digest: Digest): Promise<{ size: number } | undefined> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.blobKey(digest) }));
      return { size: head.ContentLength ?? 0 };
    } catch (error) {
      if (isS3NotFound(error)) return undefined;
      throw error;
    }
  }

  /**
   * Starts the GET at once: a response under way keeps streaming even if the object is deleted
   * meanwhile (gc, eviction), which is what a handle promises. While a shared read of the blob
   * is in progress, its handle follows that read instead (its GET also started before any
   * delete: delete() takes it out of reach first).
   */
  async open(digest: Digest): Promise<BlobHandle | undefined> {
    return this.options.redirectUrlTtlSeconds === undefined ? this.openStreaming(digest) : this.openRedirectable(digest, this.options.redirectUrlTtlSeconds);
  }

  private async openStreaming(digest: Digest): Promise<BlobHandle | undefined> {
    const joined = this.sharedReads.join(digest);
    if (joined) return joined;
    const key = this.blobKey(digest);
    const object = await this.getObject(key);
    if (object === undefined) return undefined;
    return new S3BlobHandle(object.body, object.size, {
      getRange: (range) => this.getRange(key, range),
      claim: (body) => this.sharedReads.claim(digest, body, object.size),
    });
  }

  /**
   * The object's bytes (or a range of them) as they arrive; undefined when there is no such
   * object. A GET presigned by the SDK (no signing here) and sent with undici: per 200 MiB hit
   * the SDK's node:http handler cost ~1.0 s of CPU, most of it garbage collection (node:http
   * copies every body chunk out of the socket's buffer), undici ~0.3 s (`npm run bench --
   * --only s3 --profile`: GC 10.2 s -> 0.3 s of the main thread for 16 hits).
   */
  private async getObject(key: string, range?: ByteRange): Promise<{ body: Readable; size: number } | undefined> {
    const url = await this.presignGet(key, PRESIGNED_READ_TTL_SECONDS);
    const response = await request(url, {
      dispatcher: this.objectReads,
      headers: range ? { range: `bytes=${range.start}-${range.end}` } : {},
    });
    if (response.statusCode === 404) {
      await response.body.dump();
      return undefined;
    }
    if (response.statusCode !== (range ? 206 : 200)) {
      const detail = await boundedText(response.body, MAX_ERROR_BODY_BYTES);
      throw new Error(`S3 GET ${key} of ${this.where} answered ${response.statusCode}: ${detail}`);
    }
    const length = response.headers['content-length'];
    // undici turns a destroy() before the end (a HEAD, a client gone, close()) into an 'error'
    // event: whoever reads the body listens for its errors; this one keeps an unread body's from
    // being an uncaught exception of the process.
    response.body.on('error', () => undefined);
    return { body: response.body, size: Number(Array.isArray(length) ? length[0] : length) };
  }

  /**
   * Redirects on: a HEAD says the blob is there and how big. A client that is redirected GETs
   * it from the bucket; a caller that streams instead (a HEAD request, a Range the HTTP layer
   * answers itself) gets a GET started then.
   */
  private async openRedirectable(digest: Digest, ttlSeconds: number): Promise<BlobHandle | undefined> {
    const stored = await this.stat(digest);
    if (stored === undefined) return undefined;
    const key = this.blobKey(digest);
    return new S3RedirectableHandle(stored.size, {
      get: (range) => this.getRange(key, range),
      presign: () => this.presignGet(key, ttlSeconds),
    });
  }

  /** A GET of `key` valid for `ttlSeconds`, signed by the SDK. */
  private presignGet(key: string, ttlSeconds: number): Promise<string> {
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: key }), { expiresIn: ttlSeconds });
  }

  private async getRange(key: string, range: ByteRange): Promise<Readable> {
    const object = await this.getObject(key, range);
    if (object === undefined) throw new S3ObjectGone(key);
    return object.body;
  }

  async readAll(digest: Digest, maxBytes: number): Promise<Buffer | undefined> {
    // One GET, redirects or not: the bytes are wanted here.
    const handle = await this.openStreaming(digest);
    if (!handle) return undefined;
    if (handle.size > maxBytes) {
      await handle.close();
      throw new Error(`blob ${digest.text} is ${handle.size} bytes, over the ${maxBytes}-byte limit`);
    }
    const chunks: Buffer[] = [];
    for await (const chunk of handle.stream()) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  async createWriter(expected?: Digest, options: { algorithm?: DigestAlgorithm } = {}): Promise<BlobWriter> {
    const scratch = await this.scratch.createWriter(expected, options);
    const writer = new S3BlobWriter(expected, scratch, {
      client: this.client,
      bucket: this.bucket,
      partBytes: this.partBytes,
      maxSingleCopyBytes: this.options.maxSingleCopyBytes ?? MAX_SINGLE_COPY_BYTES,
      blobKey: (digest) => this.blobKey(digest),
      stagingKey: () => `${this.stagingPrefix}${randomUUID()}`,
      settled: (settledWriter) => this.live.delete(settledWriter),
    });
    this.live.add(writer);
    return writer;
  }

  async put(digest: Digest, bytes: Uint8Array): Promise<void> {
    const actual = createDigester(digest.algorithm).update(bytes).digest('hex');
    if (actual !== digest.hex) throw new DigestMismatchError(digest.text, `${digest.algorithm}:${actual}`, bytes.byteLength);
    await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.blobKey(digest), Body: bytes, ContentLength: bytes.byteLength }));
  }

  /** S3 deletes say nothing about whether there was an object: a HEAD first tells. */
  async delete(digest: Digest): Promise<boolean> {
    this.sharedReads.forget(digest);
    if ((await this.stat(digest)) === undefined) return false;
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.blobKey(digest) }));
    return true;
  }

  async *list(): AsyncGenerator<StoredBlob> {
    const root = `${this.prefix}blobs/`;
    for await (const { key, size, lastModified } of listKeys(this.options, root)) {
      // <algorithm>/<2 hex>/<hex>; anything else is not a blob of ours.
      const [algorithm, shard, hex, ...rest] = key.slice(root.length).split('/');
      if (algorithm === undefined || shard === undefined || hex === undefined || rest.length > 0 || !hex.startsWith(shard)) continue;
      const digest = tryParseDigest(`${algorithm}:${hex}`);
      if (digest) yield { digest: digest.text, size, storedAt: lastModified };
    }
  }

  /**
   * Staged writes older than the grace: this process's own writers (by their last write),
   * then multipart uploads and staging objects in the bucket that no live writer here owns
   * (left by a killed process, this one or another replica).
   */
  async sweepStaging(options: { olderThanMs: number; dryRun?: boolean; now?: number }): Promise<number> {
    const now = options.now ?? Date.now();
    const isOld = (time: number) => now - time >= options.olderThanMs;
    let swept = 0;
    const ownUploads = new Set<string>();
    const ownKeys = new Set<string>();
    for (const writer of [...this.live]) {
      // Listed below too until aborted: never counted twice, never taken from a live writer.
      const upload = writer.uploadInProgress;
      if (upload) {
        ownUploads.add(upload.uploadId);
        ownKeys.add(upload.key);
      }
      if (isOld(writer.lastWriteAt)) {
        swept += 1;
        if (!options.dryRun) await writer.abort();
      }
    }
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const page = await this.client.send(
        new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
      );
      for (const upload of page.Uploads ?? []) {
        if (upload.Key === undefined || upload.UploadId === undefined || ownUploads.has(upload.UploadId)) continue;
        if (!isOld(upload.Initiated?.getTime() ?? 0)) continue;
        swept += 1;
        if (!options.dryRun) await abortMultipartUpload(this.client, this.bucket, upload.Key, upload.UploadId);
      }
      const more = page.IsTruncated === true;
      keyMarker = more ? page.NextKeyMarker : undefined;
      uploadIdMarker = more ? page.NextUploadIdMarker : undefined;
    } while (keyMarker !== undefined);
    for await (const { key, lastModified } of listKeys(this.options, this.stagingPrefix)) {
      if (ownKeys.has(key) || !isOld(lastModified)) continue;
      swept += 1;
      if (!options.dryRun) await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    }
    return swept;
  }

  /** Writes land in the local scratch directory first: its free space is what bounds a miss. */
  hasRoomFor(bytes: number | undefined): Promise<boolean> {
    return this.scratch.hasRoomFor(bytes);
  }

  async checkWritable(): Promise<string | undefined> {
    const local = await this.scratch.checkWritable();
    if (local !== undefined) return `scratch directory: ${local}`;
    const probe = `${this.stagingPrefix}ready-${randomUUID()}`;
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: probe, Body: 'ok' }));
    } catch (error) {
      return `S3 ${this.where} is not writable: ${describeS3Error(error)}`;
    }
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: probe }));
    } catch (error) {
      return `S3 ${this.where} took a write but refused its delete: ${describeS3Error(error)}`;
    }
    return undefined;
  }

  /** Shutdown: writes that will never commit now are aborted, their uploads and files removed. */
  async close(): Promise<void> {
    await Promise.all([...this.live].map((writer) => writer.abort()));
    this.sharedReads.close();
    await this.scratch.close();
    // The server stopped answering before the store closes: a GET still open has no reader.
    await this.objectReads.destroy();
  }
}

async function abortMultipartUpload(client: S3Client, bucket: string, key: string, uploadId: string): Promise<void> {
  try {
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }));
  } catch (error) {
    if (!isNoSuchUpload(error)) throw error;
  }
}

export function describeS3Error(error: unknown): string {
  if (error instanceof S3ServiceException) {
    return `${error.name} (HTTP ${error.$metadata.httpStatusCode ?? '?'}): ${error.message || 'no message'}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * `source` from byte `skip` on, at most `length` bytes; the source is destroyed once enough
 * was read (or when the consumer stops early).
 */
function slice(source: Readable, skip: number, length: number): Readable {
  async function* bytes(): AsyncGenerator<Buffer> {
    const window = new ByteWindow(skip, length);
    try {
      for await (const chunk of source as AsyncIterable<Buffer>) {
        const piece = window.take(chunk);
        if (piece.byteLength > 0) yield piece;
        if (window.left === 0) return;
      }
      if (window.left > 0) throw new Error(`S3 object ended ${window.left} bytes short`);
    } finally {
      source.destroy();
    }
  }
  return Readable.from(bytes(), { objectMode: false });
}

class S3BlobHandle implements BlobHandle {
  private body: Readable | undefined;

  constructor(
    body: Readable,
    readonly size: number,
    private readonly object: {
      getRange(range: ByteRange): Promise<Readable>;
      /** Whether a GET of the whole object is sent alone or shared with concurrent hits (SharedReads.claim). */
      claim(body: Readable): Promise<{ shared: SharedReadHandle } | { alone: () => void }>;
    },
  ) {
    this.body = body;
  }

  /** The GET started by open(); only the first stream() may take it. */
  private takeBody(): Readable {
    const body = this.body;
    if (body === undefined) throw new Error('S3 blob handle already streamed or closed');
    this.body = undefined;
    return body;
  }

  stream(range?: ByteRange): Readable {
    const body = this.takeBody();
    const { start, end, length } = this.bounds(range);
    // From the start: the GET already under way serves it.
    if (start === 0) return length === this.size ? body : slice(body, 0, length);
    const output = new PassThrough();
    this.rangedSource(body, start, end).then(
      (source) => pipeline(source.skip === 0 ? source.body : slice(source.body, source.skip, length), output, () => undefined),
      (error: unknown) => output.destroy(error instanceof Error ? error : new Error(String(error))),
    );
    return output;
  }

  /**
   * GET hits: the body's chunks go straight into the client's response (writeBody), without
   * the stream layers of stream(). A whole-object hit of a big blob that comes while another
   * one is under way becomes a shared read, which hits coming meanwhile follow instead of
   * sending GETs of their own (storage/shared-reads.ts).
   */
  async writeTo(destination: Writable, range?: ByteRange): Promise<void> {
    const body = this.takeBody();
    const { start, end, length } = this.bounds(range);
    // A whole-object read is claimed: shared with concurrent hits, or counted while it goes alone.
    const claim = start === 0 && length === this.size ? await this.object.claim(body) : undefined;
    if (claim && 'shared' in claim) return claim.shared.writeTo(destination);
    try {
      let source: { body: Readable; skip: number; size: number };
      try {
        source = start === 0 ? { body, skip: 0, size: this.size } : await this.rangedSource(body, start, end);
      } catch (error) {
        destination.destroy(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      await writeBody(source, length, destination, { freshChunks: true });
    } finally {
      claim?.alone();
    }
  }

  private bounds(range: ByteRange | undefined): { start: number; end: number; length: number } {
    const start = range?.start ?? 0;
    const end = range?.end ?? this.size - 1;
    return { start, end, length: Math.max(0, end - start + 1) };
  }

  /**
   * A range that does not start at 0: a ranged GET, so the skipped bytes are not transferred
   * (`body`, the GET under way, is dropped); if the object was deleted since open(), `body`
   * still has them, `skip` bytes before the range. `size`: all the body holds.
   */
  private async rangedSource(body: Readable, start: number, end: number): Promise<{ body: Readable; skip: number; size: number }> {
    try {
      const ranged = await this.object.getRange({ start, end });
      body.destroy();
      return { body: ranged, skip: 0, size: end - start + 1 };
    } catch (error) {
      if (isS3NotFound(error)) return { body, skip: start, size: this.size };
      body.destroy();
      throw error;
    }
  }

  close(): Promise<void> {
    this.body?.destroy();
    this.body = undefined;
    return Promise.resolve();
  }
}

/**
 * A committed blob when redirects are on: known to exist (HEAD), its bytes fetched only if
 * streamed here after all.
 */
class S3RedirectableHandle implements BlobHandle {
  private used = false;

  constructor(
    readonly size: number,
    private readonly object: { get(range: ByteRange): Promise<Readable>; presign(): Promise<string> },
  ) {}

  private take(): void {
    if (this.used) throw new Error('S3 blob handle already used or closed');
    this.used = true;
  }

  redirectUrl(): Promise<string> {
    this.take();
    return this.object.presign();
  }

  stream(range?: ByteRange): Readable {
    this.take();
    const output = new PassThrough();
    const start = range?.start ?? 0;
    const end = range?.end ?? this.size - 1;
    // An empty object has no byte range to ask for.
    if (end < start) return output.end();
    this.object.get({ start, end }).then(
      (body) => pipeline(body, output, () => undefined),
      (error: unknown) => output.destroy(error instanceof Error ? error : new Error(String(error))),
    );
    return output;
  }

  close(): Promise<void> {
    this.used = true;
    return Promise.resolve();
  }
}

interface WriterContext {
  client: S3Client;
  bucket: string;
  partBytes: number;
  maxSingleCopyBytes: number;
  blobKey(digest: Digest): string;
  stagingKey(): string;
  settled(writer: S3BlobWriter): void;
}

interface Upload {
  key: string;
  uploadId: string;
}

/**
 * Scratch file plus multipart upload. Parts stream from the scratch file, so nothing but the
 * fs writer's own bounded buffer is held in memory, however large the blob.
 */
class S3BlobWriter implements BlobWriter {
  // The commit uploads the last part and completes the upload (seconds for a large blob):
  // followers of a fetch get their final byte once the digest is verified, not after that.
  readonly slowCommit = true;
  private state: 'open' | 'committed' | 'aborted' = 'open';
  lastWriteAt = Date.now();
  /** Bytes [0, assigned) belong to parts already scheduled. */
  private assigned = 0;
  private readonly etags: string[] = [];
  private upload: Promise<Upload> | undefined;
  private started: Upload | undefined;
  /** Parts scheduled but not yet sent, in order. */
  private readonly queuedParts: Array<{ index: number; start: number; length: number }> = [];
  /** Parts being sent. */
  private readonly sendingParts = new Set<Promise<void>>();
  /** Resolves when a part finished (and the next one may have started). */
  private readonly partProgress = new ChangeSignal();
  /** Every byte is in (or an upload is between chunks): send parts at full parallelism. */
  private draining = false;
  /** Parts after the first that filled slowly (SLOW_PART_FILL_MS), the last ones in a row. */
  private slowPartsInARow = 0;
  /** The last SLOW_PARTS_IN_A_ROW parts filled slowly: parts may go while bytes still arrive. */
  private uploadAlongside = false;
  /** When the part being filled got its first byte (the previous part's last). */
  private partFillStartedAt: number | undefined;
  private failure: Error | undefined;
  private readonly cancel = new AbortController();
  private verified: Digest | undefined;
  /** Set once every byte is in parts (commit, or close() of a verified writer). */
  private remainderStaged: Promise<void> | undefined;
  private scratchClosed = false;

  constructor(
    readonly expected: Digest | undefined,
    private readonly scratch: BlobWriter,
    private readonly context: WriterContext,
  ) {}

  get bytesWritten(): number {
    return this.scratch.bytesWritten;
  }

  /** The multipart upload this writer runs, if it started one. */
  get uploadInProgress(): Upload | undefined {
    return this.started;
  }

  private get label(): string {
    return this.expected?.text ?? 'upload';
  }

  async write(chunk: Uint8Array): Promise<void> {
    await this.writeNow(chunk);
  }

  /**
   * The scratch writer's fast path (BlobWriter.writeNow): a cold miss streams thousands of
   * chunks, and without it every chunk paused and resumed the upstream body. Parts read what
   * is not yet in the file from the scratch writer's memory, so they may be scheduled at once.
   */
  writeNow(chunk: Uint8Array): Promise<void> | undefined {
    this.throwIfFailed();
    const now = Date.now();
    this.partFillStartedAt ??= now;
    const pending = writeChunk(this.scratch, chunk);
    this.lastWriteAt = now;
    while (this.scratch.bytesWritten - this.assigned >= this.context.partBytes) {
      // A chunk that completes two parts at once completed the second fast.
      // The first part's time includes the download's start, not only its pace.
      const slow = this.assigned > 0 && now - this.partFillStartedAt >= SLOW_PART_FILL_MS;
      this.slowPartsInARow = slow ? this.slowPartsInARow + 1 : 0;
      this.uploadAlongside = this.slowPartsInARow >= SLOW_PARTS_IN_A_ROW;
      this.partFillStartedAt = now;
      this.schedulePart(this.assigned, this.context.partBytes);
    }
    return pending;
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  readAt(position: number, length: number): Promise<Buffer> {
    return this.scratch.readAt(position, length);
  }

  readInto(buffer: Buffer, position: number, length: number): Promise<Buffer> {
    return readIntoBuffer(this.scratch, buffer, position, length);
  }

  /**
   * Gives back the scratch file's descriptor between an upload's chunks, as the fs writer does
   * (issue 14: idle sessions must not hold descriptors). Parts already scheduled read the
   * scratch file, so they finish first; the next write or part reopens it. A part's failure is
   * kept for the next write or the commit, as it is without a suspend.
   */
  async suspend(): Promise<void> {
    await this.allPartsSent();
    this.draining = false;
    await this.scratch.suspend?.();
  }

  /** The upload's key: the blob's own when its digest is known, else a staging key. */
  private startUpload(): Promise<Upload> {
    this.upload ??= (async () => {
      const key = this.expected ? this.context.blobKey(this.expected) : this.context.stagingKey();
      // Not cancellable: a create cut off by abort() may still have happened on the server,
      // and abort() can only abort an upload whose id it got.
      const created = await this.context.client.send(new CreateMultipartUploadCommand({ Bucket: this.context.bucket, Key: key }));
      if (created.UploadId === undefined) throw new Error(`S3 CreateMultipartUpload for ${key} returned no upload id`);
      this.started = { key, uploadId: created.UploadId };
      return this.started;
    })();
    return this.upload;
  }

  private schedulePart(start: number, length: number): void {
    this.queuedParts.push({ index: this.etags.length, start, length });
    this.etags.push('');
    this.assigned = start + length;
    this.sendParts();
  }

  /** Starts queued parts up to the number allowed in flight now. */
  private sendParts(): void {
    const limit = this.draining ? PARTS_IN_FLIGHT : this.uploadAlongside ? PARTS_IN_FLIGHT_WHILE_WRITING : 0;
    while (this.sendingParts.size < limit) {
      const part = this.queuedParts.shift();
      if (part === undefined) return;
      const sending: Promise<void> = this.sendPart(part.index, part.start, part.length).finally(() => {
        this.sendingParts.delete(sending);
        this.sendParts();
        this.partProgress.fire();
      });
      this.sendingParts.add(sending);
    }
  }

  /** Sends every scheduled part at full parallelism; resolves once none is queued or in flight. */
  private async allPartsSent(): Promise<void> {
    this.draining = true;
    this.sendParts();
    while (this.sendingParts.size > 0 || this.queuedParts.length > 0) await this.partProgress.next();
  }

  /** Never rejects: a failure is kept for the next write or the commit. */
  private async sendPart(index: number, start: number, length: number): Promise<void> {
    if (this.failure || this.state === 'aborted') return;
    try {
      const upload = await this.startUpload();
      const sent = await this.context.client.send(
        new UploadPartCommand({
          Bucket: this.context.bucket,
          Key: upload.key,
          UploadId: upload.uploadId,
          PartNumber: index + 1,
          Body: this.scratchRange(start, length),
          ContentLength: length,
        }),
        { abortSignal: this.cancel.signal },
      );
      if (sent.ETag === undefined) throw new Error(`S3 UploadPart ${index + 1} of ${upload.key} returned no ETag`);
      this.etags[index] = sent.ETag;
    } catch (error) {
      this.failure ??= new Error(`uploading part ${index + 1} of ${this.label} to S3 failed: ${describeS3Error(error)}`, { cause: error });
    }
  }

  /** Bytes [start, start + length) of the scratch file, read as the part is sent. */
  private scratchRange(start: number, length: number): Readable {
    const scratch = this.scratch;
    async function* bytes(): AsyncGenerator<Buffer> {
      for (let at = start; at < start + length; ) {
        const piece = await scratch.readAt(at, Math.min(READ_CHUNK_BYTES, start + length - at));
        if (piece.byteLength === 0) throw new Error(`scratch file ended at ${at} of ${start + length} bytes`);
        at += piece.byteLength;
        yield piece;
      }
    }
    const body = Readable.from(bytes(), { objectMode: false });
    // A read can fail once the writer is aborted (a failed digest check aborts the scratch file
    // while parts are still being sent). The request carrying this body fails with it; the
    // listener keeps a stream error from also being an uncaught exception of the process.
    body.on('error', (error) => {
      this.failure ??= new Error(`reading the scratch file of ${this.label} for S3 failed: ${error.message}`, { cause: error });
    });
    return body;
  }

  /** Schedules the last part and waits for every part to be uploaded. */
  private stageRemainder(): Promise<void> {
    this.remainderStaged ??= (async () => {
      const size = this.scratch.bytesWritten;
      // An empty blob has no part: commit PUTs it.
      if (size > this.assigned) this.schedulePart(this.assigned, size - this.assigned);
      await this.allPartsSent();
      this.throwIfFailed();
    })();
    return this.remainderStaged;
  }

  async verify(expectedSize?: number): Promise<Digest> {
    if (this.verified) return this.verified;
    if (this.state !== 'open') throw new Error(`verify after ${this.state} for ${this.label}`);
    try {
      this.verified = await this.scratch.verify(expectedSize);
    } catch (error) {
      await this.abort();
      throw error;
    }
    // Every byte is in and checked: the parts behind them go out at full parallelism. Not
    // before: the last bytes' hashing is what the client's final byte waits for.
    this.draining = true;
    this.sendParts();
    return this.verified;
  }

  async commit(expectedSize?: number): Promise<Digest> {
    const digest = await this.verify(expectedSize);
    if (this.state !== 'open') throw new Error(`commit after ${this.state} for ${this.label}`);
    const finalKey = this.context.blobKey(digest);
    const { client, bucket } = this.context;
    try {
      if (this.etags.length === 0) {
        // Smaller than a part (and not staged by close()): one PUT of the verified bytes,
        // straight from the scratch file.
        const size = this.scratch.bytesWritten;
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: finalKey, Body: this.scratchRange(0, size), ContentLength: size }), {
          abortSignal: this.cancel.signal,
        });
      } else {
        await this.stageRemainder();
        const upload = await this.startUpload();
        await client.send(
          new CompleteMultipartUploadCommand({
            Bucket: bucket,
            Key: upload.key,
            UploadId: upload.uploadId,
            MultipartUpload: { Parts: this.etags.map((ETag, index) => ({ ETag, PartNumber: index + 1 })) },
          }),
          { abortSignal: this.cancel.signal },
        );
        this.started = undefined;
        if (upload.key !== finalKey) {
          try {
            await this.copyInBucket(upload.key, finalKey, this.scratch.bytesWritten);
          } finally {
            await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: upload.key }));
          }
        }
      }
    } catch (error) {
      await this.abort();
      throw new Error(`storing ${digest.text} in S3 failed: ${describeS3Error(error)}`, { cause: error });
    }
    // abort() (store shutdown, a sweep) may have run during the awaits above.
    const stateNow: string = this.state;
    if (stateNow !== 'open') throw new Error(`commit after ${stateNow} for ${this.label}`);
    this.state = 'committed';
    this.context.settled(this);
    // Closed before the commit (verified first): the scratch file is no longer needed.
    if (this.scratchClosed) void this.scratch.abort().catch(() => undefined);
    return digest;
  }

  /**
   * Server-side copy of a staged blob to its key: one CopyObject up to S3's 5 GiB limit, else a
   * multipart upload of UploadPartCopy ranges, completed only when every range is copied.
   */
  private async copyInBucket(from: string, to: string, size: number): Promise<void> {
    const { client, bucket, maxSingleCopyBytes } = this.context;
    const source = encodeURI(`${bucket}/${from}`);
    if (size <= maxSingleCopyBytes) {
      await client.send(new CopyObjectCommand({ Bucket: bucket, Key: to, CopySource: source }));
      return;
    }
    const created = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: to }));
    const uploadId = created.UploadId;
    if (uploadId === undefined) throw new Error(`S3 CreateMultipartUpload for ${to} returned no upload id`);
    try {
      const parts: Array<{ ETag: string; PartNumber: number }> = [];
      for (let start = 0; start < size; start += maxSingleCopyBytes) {
        const end = Math.min(size, start + maxSingleCopyBytes) - 1;
        const copied = await client.send(
          new UploadPartCopyCommand({ Bucket: bucket, Key: to, UploadId: uploadId, PartNumber: parts.length + 1, CopySource: source, CopySourceRange: `bytes=${start}-${end}` }),
        );
        const etag = copied.CopyPartResult?.ETag;
        if (etag === undefined) throw new Error(`S3 UploadPartCopy ${parts.length + 1} of ${to} returned no ETag`);
        parts.push({ ETag: etag, PartNumber: parts.length + 1 });
      }
      await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: to, UploadId: uploadId, MultipartUpload: { Parts: parts } }));
    } catch (error) {
      await abortMultipartUpload(client, bucket, to, uploadId).catch(() => undefined);
      throw error;
    }
  }

  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    this.context.settled(this);
    this.cancel.abort();
    this.queuedParts.length = 0;
    await this.scratch.abort();
    await Promise.allSettled([...this.sendingParts, this.remainderStaged]);
    const upload = this.upload ? await this.upload.catch(() => undefined) : undefined;
    if (upload !== undefined) await abortMultipartUpload(this.context.client, this.context.bucket, upload.key, upload.uploadId);
    this.started = undefined;
  }

  /**
   * Releases the scratch file once nobody reads it. A verified writer not yet committed (an
   * import verifies everything first, then commits) uploads its last part before the file
   * goes, so the commit needs nothing local.
   */
  close(): void {
    if (this.scratchClosed) return;
    this.scratchClosed = true;
    if (this.state === 'open' && this.verified) {
      const staging = this.stageRemainder();
      staging.catch(() => undefined).finally(() => this.scratch.close());
      return;
    }
    if (this.state === 'committed') {
      // The blob is in S3: the scratch file goes now.
      void this.scratch
        .abort()
        .catch(() => undefined)
        .finally(() => this.scratch.close());
      return;
    }
    this.scratch.close();
  }
}
