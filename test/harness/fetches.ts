// On S3 a client's cold pull ends once the digest is verified, while the upload to the bucket
// still completes (BlobWriter.slowCommit): a test that checks the blob is stored right after a
// pull waits for that commit first, bounded, via the mirror's own in-flight gauge.
import { request } from 'undici';
import { metricValue } from '../support/prometheus-text.js';
import { pollUntil } from './wait.js';

/** Resolves once the Longshore at `baseUrl` has no blob fetch in flight (every one committed or failed). */
export async function fetchesSettled(baseUrl: string, timeoutMs = 30_000): Promise<void> {
  await pollUntil(
    async () => {
      const response = await request(`${baseUrl}/metrics`);
      const text = await response.body.text();
      if (response.statusCode !== 200) throw new Error(`/metrics answered ${response.statusCode}`);
      return metricValue(text, 'longshore_inflight_fetches') === 0;
    },
    { timeoutMs, intervalMs: 50, what: `the fetches in flight at ${baseUrl} to commit` },
  );
}
