// v1 image chains for tests, built on the TarSum fixtures: the layers are gzip streams the
// Go TarSum reader produced, and each image's X-Docker-Checksum is computed from the per-file
// sums Go reported (test/fixtures/tarsum/vectors.json), not by the server's own TarSum code.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { V1Image } from '../harness/v1-client.js';

const FIXTURES = path.join(import.meta.dirname, '../fixtures/tarsum');

interface Vector {
  case: string;
  layer: string;
  fileSums: Array<{ sum: string }>;
}

const vectors = JSON.parse(await readFile(path.join(FIXTURES, 'vectors.json'), 'utf8')) as Vector[];

export function imageId(seed: string): string {
  return createHash('sha256').update(seed).digest('hex');
}

/** TarSum v0 from Go's per-file sums: sha256(json + sorted sums). Only for paths without duplicates. */
export function tarsumFromGoSums(json: Buffer, fileSums: ReadonlyArray<{ sum: string }>): string {
  const hash = createHash('sha256').update(json);
  for (const sum of fileSums.map((f) => f.sum).sort()) hash.update(sum);
  return `tarsum+sha256:${hash.digest('hex')}`;
}

/** A layer fixture by case letter: a (one file), b (names, links), c (long names), f (3 MiB). */
export async function layerFixture(letter: string): Promise<{ layer: Buffer; fileSums: Vector['fileSums'] }> {
  const vector = vectors.find((v) => v.case === letter);
  if (!vector) throw new Error(`no TarSum fixture ${letter}`);
  return { layer: await readFile(path.join(FIXTURES, vector.layer)), fileSums: vector.fileSums };
}

/** A chain of images (base first), one per layer letter; ids derive from `seed`. */
export async function v1Chain(seed: string, letters: readonly string[] = ['a', 'b', 'f']): Promise<V1Image[]> {
  const chain: V1Image[] = [];
  let parent: string | undefined;
  for (const [index, letter] of letters.entries()) {
    const id = imageId(`${seed}/${index}`);
    const { layer, fileSums } = await layerFixture(letter);
    const json = Buffer.from(
      JSON.stringify({
        id,
        ...(parent ? { parent } : {}),
        created: `2016-03-0${index + 1}T10:00:00Z`,
        container_config: { Cmd: [`/bin/sh -c #(nop) ADD layer ${letter}`] },
        architecture: 'amd64',
        os: 'linux',
      }),
    );
    chain.push({ id, json, layer, tarsum: tarsumFromGoSums(json, fileSums) });
    parent = id;
  }
  return chain;
}
