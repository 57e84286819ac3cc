// A v1 view of a v2 image: the chain of v1 image ids and json documents that registry v2
// (schema1 ConfigBuilder, distribution v2.6.2 as vendored in moby v1.13.1) derives from a
// schema2 manifest and its config. Ids and bytes match the Go builder exactly, so old Docker
// clients see the same ids as from any registry that ever converted the image.
import { createHash } from 'node:crypto';
import { goCompact, goString, rawObjectMembers } from './go-json.js';

/** gzip of a 1024-byte tar of zeros: the layer of empty history entries. */
export const EMPTY_GZ_TAR_DIGEST = 'sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4';

export interface V1ChainEntry {
  id: string;
  /** "" for the base image. */
  parent: string;
  /** The v2 blob a v1 `layer` request returns. */
  blobSum: string;
  /** The exact bytes a v1 `json` request returns. */
  v1Compatibility: string;
}

interface HistoryEntry {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

const sha256hex = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');
const hexOf = (digest: string) => digest.slice(digest.indexOf(':') + 1);

/** RFC 3339 as Go prints time.Time (RFC3339Nano): trailing fraction zeros dropped, +00:00 as Z. */
export function goTime(value: string | undefined): string {
  if (!value) return '0001-01-01T00:00:00Z';
  const match = /^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$/.exec(value);
  if (!match) throw new Error(`history time "${value}" is not RFC 3339`);
  const fraction = (match[3] ?? '').replace(/0+$/, '');
  const zone = match[4] === 'Z' || match[4] === 'z' || match[4] === '+00:00' || match[4] === '-00:00' ? 'Z' : (match[4] as string);
  return `${match[1]}T${match[2]}${fraction ? `.${fraction}` : ''}${zone}`;
}

/** Top first, like a schema1 manifest. `configBytes` must be the config blob exactly as stored. */
export function v1ChainFromV2(configBytes: Buffer | string, layerDigests: readonly string[]): V1ChainEntry[] {
  const configText = typeof configBytes === 'string' ? configBytes : configBytes.toString('utf8');
  const config = JSON.parse(configText) as { history?: HistoryEntry[] };
  const history = config.history ?? [];
  if (history.length === 0) throw new Error('image config has no history: cannot build a v1 chain');
  const nonEmpty = history.filter((h) => !h.empty_layer).length;
  if (nonEmpty !== layerDigests.length) throw new Error(`config history has ${nonEmpty} non-empty entries but the manifest has ${layerDigests.length} layers`);

  const chain: V1ChainEntry[] = [];
  let parent = '';
  let layer = 0;
  for (const entry of history.slice(0, -1)) {
    const blobSum = entry.empty_layer ? EMPTY_GZ_TAR_DIGEST : (layerDigests[layer++] as string);
    const id = sha256hex(`${hexOf(blobSum)} ${parent}`);
    // Field order and omitempty rules of Go's v1Compatibility struct.
    let json = `{"id":${goString(id)}`;
    if (parent) json += `,"parent":${goString(parent)}`;
    if (entry.comment) json += `,"comment":${goString(entry.comment)}`;
    json += `,"created":${goString(goTime(entry.created))}`;
    json += `,"container_config":{"Cmd":[${goString(entry.created_by ?? '')}]}`;
    if (entry.author) json += `,"author":${goString(entry.author)}`;
    if (entry.empty_layer) json += ',"throwaway":true';
    json += '}';
    chain.unshift({ id, parent, blobSum, v1Compatibility: json });
    parent = id;
  }

  const top = history[history.length - 1] as HistoryEntry;
  const topBlob = top.empty_layer ? EMPTY_GZ_TAR_DIGEST : (layerDigests[layer] as string);
  const topId = sha256hex(`${hexOf(topBlob)} ${parent} ${configText}`);
  // The config re-marshalled as map[string]RawMessage: sorted keys, compacted raw values.
  const members = new Map(rawObjectMembers(goCompact(configText)));
  members.delete('rootfs');
  members.delete('history');
  members.set('id', goString(topId));
  if (parent) members.set('parent', goString(parent));
  if (top.empty_layer) members.set('throwaway', 'true');
  const keys = [...members.keys()].sort();
  const topJson = `{${keys.map((k) => `${goString(k)}:${members.get(k) as string}`).join(',')}}`;
  chain.unshift({ id: topId, parent, blobSum: topBlob, v1Compatibility: topJson });
  return chain;
}

/**
 * §11.2: a schema1 manifest's chain, top first: `history[i].v1Compatibility` served verbatim
 * with `fsLayers[i].blobSum`, checked the way Docker's pull did (fixManifestLayers): 64-hex
 * ids, adjacent duplicates collapsed (old manifests repeat an id for empty layers), every
 * parent the next id, no parent on the base, no other duplicate.
 */
export function v1ChainFromSchema1(manifestBytes: Buffer | string): V1ChainEntry[] {
  const text = typeof manifestBytes === 'string' ? manifestBytes : manifestBytes.toString('utf8');
  const doc = JSON.parse(text) as { fsLayers?: Array<{ blobSum?: string }>; history?: Array<{ v1Compatibility?: string }> };
  const layers = doc.fsLayers ?? [];
  const history = doc.history ?? [];
  if (layers.length === 0 || layers.length !== history.length) throw new Error('schema1 fsLayers and history differ in length');
  const chain: V1ChainEntry[] = [];
  for (const [index, entry] of history.entries()) {
    const v1Compatibility = entry.v1Compatibility ?? '';
    const parsed = JSON.parse(v1Compatibility) as { id?: unknown; parent?: unknown };
    const id = typeof parsed.id === 'string' ? parsed.id : '';
    if (!/^[a-f0-9]{64}$/.test(id)) throw new Error(`invalid image id "${id}" in schema1 history`);
    const entryOf: V1ChainEntry = { id, parent: typeof parsed.parent === 'string' ? parsed.parent : '', blobSum: layers[index]?.blobSum ?? '', v1Compatibility };
    // Docker drops the earlier of two adjacent entries and keeps the later one's layer.
    if (chain[chain.length - 1]?.id === id) chain[chain.length - 1] = entryOf;
    else if (chain.some((c) => c.id === id)) throw new Error(`image id ${id} appears twice, not adjacent`);
    else chain.push(entryOf);
  }
  for (let i = 0; i < chain.length - 1; i++) {
    const entry = chain[i] as V1ChainEntry;
    if (entry.parent !== (chain[i + 1] as V1ChainEntry).id) throw new Error(`parent of ${entry.id} is not the next image in the history`);
  }
  if (chain[chain.length - 1]?.parent) throw new Error('the base image has a parent');
  return chain;
}
