// A response stand-in for body writers (writeBody, a follower's writeTo): it records the bytes,
// how many write calls brought them (a writev of several chunks is one), and whether it finished.
import { Writable } from 'node:stream';

export interface RecordingSink {
  destination: Writable;
  received: () => Buffer;
  calls: () => number;
  finished: () => boolean;
}

export function recordingSink(): RecordingSink {
  const parts: Buffer[] = [];
  let calls = 0;
  let done = false;
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      calls += 1;
      parts.push(Buffer.from(chunk));
      callback();
    },
    writev(chunks, callback) {
      calls += 1;
      for (const { chunk } of chunks) parts.push(Buffer.from(chunk as Buffer));
      callback();
    },
  });
  destination.on('finish', () => (done = true));
  destination.on('error', () => undefined);
  return { destination, received: () => Buffer.concat(parts), calls: () => calls, finished: () => done };
}
