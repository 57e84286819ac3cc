// The pull-through suite, unchanged, on the S3 driver (Swift s3api): every Longshore it starts
// keeps blobs and records in a bucket of its own.
import { runSuiteOnS3 } from '../support/on-s3.js';

await runSuiteOnS3(() => import('./pull-through.test.js'));
