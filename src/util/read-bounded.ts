// Reads a small body (JSON, manifests) whole, refusing to buffer more than `maxBytes`:
// anything that is held in memory has a bound; layers are streamed instead.
//
// One body's bound is not enough when many clients send at once (or slowly, holding what they
// sent so far): request bodies also draw on one shared MemoryBudget (http.maxBufferedBodies)
// while they are read, and a body that would overdraw it is refused instead of buffered.

/** Bytes that all bodies being read together may hold. */
export class MemoryBudget {
  private used = 0;

  constructor(public limit: number) {}

  get inUse(): number {
    return this.used;
  }

  /** Takes `bytes` from the budget; false (and nothing taken) when they do not fit. */
  tryTake(bytes: number): boolean {
    if (this.used + bytes > this.limit) return false;
    this.used += bytes;
    return true;
  }

  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }
}

/**
 * Memory for client request bodies being read (manifests, v1 JSON), across all requests.
 * Its limit is set from http.maxBufferedBodies when the app is built.
 */
export const requestBodyMemory = new MemoryBudget(64 * 1024 * 1024);

export interface SharedBound {
  memory: MemoryBudget;
  /** The error for a body that does not fit in what is left of the budget. */
  exhausted: () => Error;
}

export async function readBounded(body: AsyncIterable<Buffer>, maxBytes: number, tooLarge: () => Error, shared?: SharedBound): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body) {
      total += chunk.byteLength;
      if (total > maxBytes) throw tooLarge();
      if (shared && !shared.memory.tryTake(chunk.byteLength)) {
        total -= chunk.byteLength;
        throw shared.exhausted();
      }
      chunks.push(chunk);
    }
    return Buffer.concat(chunks, total);
  } finally {
    // Released once read: the memory that piles up is that of bodies still arriving.
    shared?.memory.release(total);
  }
}
