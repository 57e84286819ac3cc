// OCI Distribution error codes and the JSON envelope they travel in.
// Routes throw RegistryError; one error handler turns it into the right status and body.

export const OCI_ERROR_STATUS = {
  BLOB_UNKNOWN: 404,
  BLOB_UPLOAD_INVALID: 400,
  BLOB_UPLOAD_UNKNOWN: 404,
  DIGEST_INVALID: 400,
  // A manifest PUT naming blobs the repository lacks: the spec's and the Go registry's 400.
  MANIFEST_BLOB_UNKNOWN: 400,
  MANIFEST_INVALID: 400,
  MANIFEST_UNKNOWN: 404,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  SIZE_INVALID: 400,
  UNAUTHORIZED: 401,
  DENIED: 403,
  UNSUPPORTED: 405,
  TOOMANYREQUESTS: 429,
  RANGE_INVALID: 416,
  // Not in the OCI list, but what the Go registry sends for failures it cannot classify.
  UNKNOWN: 500,
  UNAVAILABLE: 503,
} as const;

export type OciErrorCode = keyof typeof OCI_ERROR_STATUS;

export class RegistryError extends Error {
  readonly status: number;
  constructor(
    readonly code: OciErrorCode,
    message: string,
    options: { status?: number; detail?: unknown; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RegistryError';
    this.status = options.status ?? OCI_ERROR_STATUS[code];
    this.detail = options.detail;
    this.headers = options.headers ?? {};
  }
  readonly detail: unknown;
  readonly headers: Record<string, string>;
}

export interface OciErrorEnvelope {
  errors: Array<{ code: string; message: string; detail?: unknown }>;
}

export function ociErrorBody(error: RegistryError): OciErrorEnvelope {
  const entry: OciErrorEnvelope['errors'][number] = { code: error.code, message: error.message };
  if (error.detail !== undefined) entry.detail = error.detail;
  return { errors: [entry] };
}
