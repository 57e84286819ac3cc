// S3 metadata driver: one JSON object per record at <prefix>meta/<key>.json, the fs driver's
// layout in a bucket, so the bucket is the whole durable state. A PUT replaces an object
// whole, so readers never see half a record. Conditional writes are not needed here (and
// Swift's s3api refuses them): CoordinatedMetadataStore serialises read-modify-writes with the
// coordinator's locks.
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { assertSafeKey, type MetadataDriver } from './metadata-store.js';
import { describeS3Error, isS3NotFound, type S3Location } from './s3-blob-store.js';

const RECORD_SUFFIX = '.json';
// Records are small (tags, indexes of one repository); anything this large is not ours.
const MAX_RECORD_BYTES = 16 * 1024 * 1024;

export class S3MetadataDriver implements MetadataDriver {
  private readonly root: string;

  constructor(private readonly location: S3Location) {
    this.root = `${location.prefix}meta/`;
  }

  private objectKey(key: string): string {
    assertSafeKey(key);
    return `${this.root}${key}${RECORD_SUFFIX}`;
  }

  async get<T>(key: string): Promise<T | undefined> {
    const objectKey = this.objectKey(key);
    try {
      const response = await this.location.client.send(new GetObjectCommand({ Bucket: this.location.bucket, Key: objectKey }));
      if ((response.ContentLength ?? 0) > MAX_RECORD_BYTES) {
        await response.Body?.transformToWebStream().cancel();
        throw new Error(`record is ${response.ContentLength} bytes, over ${MAX_RECORD_BYTES}`);
      }
      const text = (await response.Body?.transformToString('utf8')) ?? '';
      return JSON.parse(text) as T;
    } catch (error) {
      if (isS3NotFound(error)) return undefined;
      throw new Error(`cannot read metadata "${key}" from S3: ${describeS3Error(error)}`, { cause: error });
    }
  }

  async put(key: string, value: unknown): Promise<void> {
    const body = JSON.stringify(value);
    await this.location.client.send(
      new PutObjectCommand({ Bucket: this.location.bucket, Key: this.objectKey(key), Body: body, ContentType: 'application/json' }),
    );
  }

  /** S3 deletes say nothing about whether there was an object: a HEAD first tells. */
  async delete(key: string): Promise<boolean> {
    const objectKey = this.objectKey(key);
    try {
      await this.location.client.send(new HeadObjectCommand({ Bucket: this.location.bucket, Key: objectKey }));
    } catch (error) {
      if (isS3NotFound(error)) return false;
      throw error;
    }
    await this.location.client.send(new DeleteObjectCommand({ Bucket: this.location.bucket, Key: objectKey }));
    return true;
  }

  /** One level of a delimited listing: records (minus ".json") and "directories", each once. */
  async list(prefix: string): Promise<string[]> {
    if (prefix) assertSafeKey(prefix);
    const base = prefix ? `${this.root}${prefix}/` : this.root;
    const names = new Set<string>();
    let token: string | undefined;
    do {
      const page = await this.location.client.send(
        new ListObjectsV2Command({ Bucket: this.location.bucket, Prefix: base, Delimiter: '/', ContinuationToken: token }),
      );
      for (const common of page.CommonPrefixes ?? []) {
        if (common.Prefix !== undefined) names.add(common.Prefix.slice(base.length, -1));
      }
      for (const entry of page.Contents ?? []) {
        const name = entry.Key?.slice(base.length);
        if (name?.endsWith(RECORD_SUFFIX)) names.add(name.slice(0, -RECORD_SUFFIX.length));
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return [...names].sort();
  }
}
