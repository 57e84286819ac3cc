// A response stand-in for writeTo that behaves as a socket does with the chunks it is given: it
// takes a copy at once (a writer may reuse a pooled buffer as soon as its write callback came),
// and, while gated, holds the callbacks back, as a client that reads nothing yet: writes back up
// and the writer has to wait.
import { Writable } from 'node:stream';

export interface GatedSink {
  destination: Writable;
  /** Writes waiting for their callback (a client that does not read). */
  readonly waiting: number;
  /** Lets every held and later write through. */
  open(): void;
  /** Opens the gate, then answers every byte received and how it ended (an error, or a clean end). */
  collect(): Promise<{ bytes: Buffer; error: Error | undefined }>;
}

export function gatedSink(options: { open?: boolean } = {}): GatedSink {
  const parts: Buffer[] = [];
  let gated = options.open !== true;
  const held: Array<() => void> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      parts.push(Buffer.from(chunk));
      if (gated) held.push(() => callback());
      else callback();
    },
  });
  // Listened for from the start: an error may come before anyone collects.
  const outcome = new Promise<Error | undefined>((resolve) => {
    destination.once('finish', () => resolve(undefined));
    destination.once('error', (error) => resolve(error));
  });
  const open = () => {
    gated = false;
    for (const callback of held.splice(0)) callback();
  };
  return {
    destination,
    get waiting() {
      return held.length;
    },
    open,
    collect: async () => {
      open();
      const error = await outcome;
      return { bytes: Buffer.concat(parts), error };
    },
  };
}
