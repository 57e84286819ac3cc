// Reads a small body (JSON, manifests) whole, refusing to buffer more than `maxBytes`:
// anything that is held in memory has a bound; layers are streamed instead.
export async function readBounded(body: AsyncIterable<Buffer>, maxBytes: number, tooLarge: () => Error): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += chunk.byteLength;
    if (total > maxBytes) throw tooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}
