// The private-push suite, unchanged, on the S3 driver (Swift s3api): pushes stream to the
// bucket through chunked PATCHes, and pulls read them back from it.
import { runSuiteOnS3 } from '../support/on-s3.js';

await runSuiteOnS3(() => import('./private-push.test.js'));
