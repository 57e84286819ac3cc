// Runs an existing e2e suite unchanged on the S3 driver: TEST_STORAGE_DRIVER=s3 gives every
// Longshore it starts a bucket of its own on a shared Swift (test/harness/longshore.ts). The
// suite's file is imported after the switch is set; a last test proves the bucket was used.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { TEST_STORAGE_ENV } from '../harness/longshore.js';
import { disposeSharedSwift, sharedSwiftObjectCounts } from '../harness/swift.js';

export async function runSuiteOnS3(loadSuite: () => Promise<unknown>): Promise<void> {
  process.env[TEST_STORAGE_ENV] = 's3';
  await loadSuite();
  test('the suite above stored its blobs and records in S3 buckets', async () => {
    const counts = await sharedSwiftObjectCounts();
    assert.ok(counts.buckets >= 1 && counts.blobs > 0 && counts.records > 0, `objects in Swift: ${JSON.stringify(counts)}`);
  });
  // Registered after the suite's own hooks, so it runs after they stopped their Longshores.
  after(disposeSharedSwift);
}
