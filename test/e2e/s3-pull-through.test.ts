// The pull-through suite, unchanged, on the S3 driver (Swift s3api): every Longshore it starts
// keeps blobs and records in a bucket of its own (test/harness/longshore.ts).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { TEST_STORAGE_ENV } from '../harness/longshore.js';
import { disposeSharedSwift, sharedSwiftObjectCounts } from '../harness/swift.js';

process.env[TEST_STORAGE_ENV] = 's3';
await import('./pull-through.test.js');

test('the suite above stored its blobs and records in S3 buckets', async () => {
  const counts = await sharedSwiftObjectCounts();
  assert.ok(counts.buckets >= 1 && counts.blobs > 0 && counts.records > 0, `objects in Swift: ${JSON.stringify(counts)}`);
});
// Registered after the suite's own hooks, so it runs after they stopped their Longshores.
after(disposeSharedSwift);
