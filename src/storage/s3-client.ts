// The one place an S3 client is configured, so the driver, the CLI and the test harness all talk
// to an S3 server the same way. Written for AWS S3 and for S3-compatible servers (OpenStack
// Swift's s3api is the one the tests run against), whose gaps this works around.
import { createHash } from 'node:crypto';
import { S3Client } from '@aws-sdk/client-s3';

export interface S3ConnectionOptions {
  /** Omit for AWS; any S3-compatible server's base URL otherwise. */
  endpoint?: string | undefined;
  region: string;
  /** Path-style URLs (http://host/bucket/key): what most non-AWS servers need. */
  forcePathStyle: boolean;
  /** Both or neither: without them the SDK's default chain (environment, profile, instance role). */
  accessKeyId?: string | undefined;
  secretAccessKey?: string | undefined;
}

// Every hit being served holds one connection to S3 for as long as its client reads (and every
// part being uploaded one more); the SDK's default of 50 sockets would queue the 51st pull.
const MAX_SOCKETS = 512;
const CONNECT_TIMEOUT_MS = 10_000;

export function createS3Client(options: S3ConnectionOptions): S3Client {
  // The pinned SDK supports Node 20; its start-up warning is about releases after January 2027,
  // and would be the one line of a server's output that is not a JSON log record.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const hasKeys = options.accessKeyId !== undefined && options.secretAccessKey !== undefined;
  const client = new S3Client({
    ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
    region: options.region,
    forcePathStyle: options.forcePathStyle,
    ...(hasKeys ? { credentials: { accessKeyId: options.accessKeyId ?? '', secretAccessKey: options.secretAccessKey ?? '' } } : {}),
    // Checksums only where S3 requires them: by default the SDK streams uploads as
    // `aws-chunked` with trailing CRCs, which Swift's s3api (and other servers) answer with 501.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // No request (idle) timeout: a hit streams at the pace of its client, idle while it is slow.
    requestHandler: {
      connectionTimeout: CONNECT_TIMEOUT_MS,
      httpAgent: { keepAlive: true, maxSockets: MAX_SOCKETS },
      httpsAgent: { keepAlive: true, maxSockets: MAX_SOCKETS },
    },
  });
  // DeleteObjects is the one call where S3 requires a body checksum. The SDK sends a CRC32
  // (`x-amz-checksum-crc32`), which AWS accepts, but Swift's s3api only knows `Content-MD5` and
  // refuses the request without it. Adding Content-MD5 as well satisfies both.
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as { headers?: Record<string, string>; body?: unknown };
      const body = request.body;
      if (context.commandName === 'DeleteObjectsCommand' && request.headers !== undefined && (typeof body === 'string' || body instanceof Uint8Array)) {
        request.headers['content-md5'] = createHash('md5').update(body).digest('base64');
      }
      return next(args);
    },
    { step: 'build', priority: 'low', name: 'longshoreContentMd5ForDeleteObjects' },
  );
  return client;
}
