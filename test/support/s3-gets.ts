// Counting the object GETs an S3 client sends (presigned ones too: presigning runs the same
// middleware stack), so tests can tell how often the bucket was asked for what.
import type { S3Client } from '@aws-sdk/client-s3';
import type { TestContext } from 'node:test';

let counters = 0;

/** The object keys `client` sends GETs for from now until the end of test `t`. */
export function countObjectGets(t: TestContext, client: S3Client): string[] {
  const keys: string[] = [];
  const stack = client.middlewareStack;
  const name = `countObjectGets${++counters}`;
  t.after(() => stack.remove(name));
  stack.add(
    (next, context) => (args) => {
      const input = args.input as { Key?: string };
      if (context.commandName === 'GetObjectCommand' && input.Key !== undefined) keys.push(input.Key);
      return next(args);
    },
    { step: 'initialize', name },
  );
  return keys;
}
