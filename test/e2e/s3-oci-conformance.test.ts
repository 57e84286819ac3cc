// The oci-conformance suite, unchanged, on the S3 driver (Swift s3api).
import { runSuiteOnS3 } from '../support/on-s3.js';

await runSuiteOnS3(() => import('./oci-conformance.test.js'));
