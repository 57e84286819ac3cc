// Errors of the S3 driver that code outside it recognises. Kept apart from the driver, which
// loads the AWS SDK (over a second of start-up on a busy machine), so that a server on the fs
// driver never loads it.

/** The bucket cannot be used (unreachable, missing, refused): what an operator fixes at start. */
export class S3BucketUnusable extends Error {
  readonly code = 'S3_BUCKET_UNUSABLE';
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'S3BucketUnusable';
  }
}
