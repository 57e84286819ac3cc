import { test } from 'node:test';
import assert from 'node:assert/strict';
import { digestOf, tryParseDigest } from '../../src/protocol/digest.js';
import type { RegistryError } from '../../src/protocol/errors.js';
import { accepts, MediaType, parseAccept, sniffManifestMediaType, upstreamAcceptList } from '../../src/protocol/media-types.js';
import { parseRange } from '../../src/protocol/range.js';
import { isValidRepositoryName, isValidTag, parseManifestReference, parseV2Path } from '../../src/protocol/reference.js';
import { parseWwwAuthenticate } from '../../src/upstream/www-authenticate.js';

const HEX = 'a'.repeat(64);

test('repository names follow the distribution grammar', () => {
  for (const name of ['alpine', 'library/alpine', 'a/b/c/d/e', 'my-org/my_app', 'x.y/z__w', 'a--b']) {
    assert.ok(isValidRepositoryName(name), name);
  }
  for (const name of ['', 'Alpine', '/a', 'a/', 'a//b', '../etc', 'a/../b', '-a', 'a_', 'a:b', 'a'.repeat(256)]) {
    assert.ok(!isValidRepositoryName(name), name);
  }
});

test('tags follow the distribution grammar', () => {
  assert.ok(isValidTag('latest'));
  assert.ok(isValidTag('v1.2.3-rc_1'));
  assert.ok(isValidTag('_x'));
  assert.ok(!isValidTag('.hidden'));
  assert.ok(!isValidTag('-x'));
  assert.ok(!isValidTag('a'.repeat(129)));
  assert.ok(!isValidTag('a/b'));
});

test('digests: only verifiable algorithms with exact lengths', () => {
  assert.deepEqual(tryParseDigest(`sha256:${HEX}`), { algorithm: 'sha256', hex: HEX, text: `sha256:${HEX}` });
  assert.equal(tryParseDigest(`sha512:${'b'.repeat(128)}`)?.algorithm, 'sha512');
  assert.equal(tryParseDigest(`sha256:${HEX.toUpperCase()}`), undefined);
  assert.equal(tryParseDigest(`sha256:${HEX}0`), undefined);
  assert.equal(tryParseDigest(`md5:${'a'.repeat(32)}`), undefined);
  assert.equal(tryParseDigest(`sha256:../../${HEX}`), undefined);
  assert.equal(digestOf(Buffer.from('')), 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
});

test('manifest references are tags or digests; bad ones are 400s in the OCI vocabulary', () => {
  assert.deepEqual(parseManifestReference('latest'), { kind: 'tag', tag: 'latest' });
  assert.equal(parseManifestReference(`sha256:${HEX}`).kind, 'digest');
  assert.throws(() => parseManifestReference('sha256:nothex'), (e: RegistryError) => e.code === 'DIGEST_INVALID' && e.status === 400);
  assert.throws(() => parseManifestReference('.bad'), (e: RegistryError) => e.status === 400);
});

test('v2 paths are matched from the right so names may contain route words', () => {
  assert.deepEqual(parseV2Path(''), { kind: 'base' });
  assert.deepEqual(parseV2Path('_catalog'), { kind: 'catalog' });
  assert.deepEqual(parseV2Path('library/alpine/manifests/latest'), { kind: 'manifest', name: 'library/alpine', reference: 'latest' });
  assert.deepEqual(parseV2Path(`a/blobs/b/blobs/sha256:${HEX}`), { kind: 'blob', name: 'a/blobs/b', digest: `sha256:${HEX}` });
  assert.deepEqual(parseV2Path('a/manifests/x/tags/list'), { kind: 'tags', name: 'a/manifests/x' });
  assert.deepEqual(parseV2Path('a/b/blobs/uploads/'), { kind: 'upload', name: 'a/b', uploadId: undefined });
  assert.deepEqual(parseV2Path('a/b/blobs/uploads/123'), { kind: 'upload', name: 'a/b', uploadId: '123' });
  assert.deepEqual(parseV2Path(`a/referrers/sha256:${HEX}`), { kind: 'referrers', name: 'a', digest: `sha256:${HEX}` });
  assert.equal(parseV2Path('a/unknown/thing'), undefined);
  assert.equal(parseV2Path('manifests/latest'), undefined);
});

test('Accept: separate header lines and comma-joined lists parse alike', () => {
  const docker = [MediaType.dockerManifest, MediaType.dockerManifestList, 'application/json; q=0.5'];
  assert.deepEqual(parseAccept(docker), [MediaType.dockerManifest, MediaType.dockerManifestList, 'application/json']);
  assert.deepEqual(parseAccept(`${MediaType.ociManifest}, ${MediaType.ociIndex} , */*`), [MediaType.ociManifest, MediaType.ociIndex, '*/*']);
  assert.deepEqual(parseAccept(`${MediaType.ociIndex};q=0`), []);
  assert.deepEqual(parseAccept(undefined), []);
});

test('Accept: the reused answer for a repeated header is the right one when headers alternate, and cannot be changed by a caller', () => {
  const oci = `${MediaType.ociManifest}, ${MediaType.ociIndex}`;
  const docker = MediaType.dockerManifest;
  for (let i = 0; i < 3; i += 1) {
    assert.deepEqual(parseAccept(oci), [MediaType.ociManifest, MediaType.ociIndex]);
    assert.deepEqual(parseAccept(oci), [MediaType.ociManifest, MediaType.ociIndex]);
    assert.deepEqual(parseAccept(docker), [MediaType.dockerManifest]);
  }
  assert.throws(() => (parseAccept(docker) as string[]).push('*/*'), TypeError);
  assert.deepEqual(parseAccept(docker), [MediaType.dockerManifest]);
});

test('accepts: exact types, wildcards, and no Accept at all', () => {
  assert.ok(accepts([], MediaType.ociIndex));
  assert.ok(accepts([MediaType.ociIndex], MediaType.ociIndex));
  assert.ok(accepts(['*/*'], MediaType.ociIndex));
  assert.ok(accepts(['application/*'], MediaType.ociIndex));
  assert.ok(!accepts([MediaType.dockerManifest], MediaType.dockerManifestList));
});

test('upstream Accept lists always carry every modern manifest type', () => {
  const list = upstreamAcceptList([MediaType.dockerSchema1Signed, '*/*']);
  for (const type of [MediaType.ociIndex, MediaType.ociManifest, MediaType.dockerManifestList, MediaType.dockerManifest, MediaType.dockerSchema1Signed]) {
    assert.ok(list.includes(type), type);
  }
  assert.ok(!list.includes('*/*'));
});

test('media type sniffing when the upstream sends a generic Content-Type', () => {
  assert.equal(sniffManifestMediaType(Buffer.from(JSON.stringify({ mediaType: MediaType.dockerManifest }))), MediaType.dockerManifest);
  assert.equal(sniffManifestMediaType(Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] }))), MediaType.ociIndex);
  assert.equal(sniffManifestMediaType(Buffer.from(JSON.stringify({ schemaVersion: 2, config: {}, layers: [] }))), MediaType.ociManifest);
  assert.equal(sniffManifestMediaType(Buffer.from('not json')), undefined);
});

test('Range headers', () => {
  assert.deepEqual(parseRange(undefined, 100), { kind: 'none' });
  assert.deepEqual(parseRange('bytes=0-9', 100), { kind: 'range', start: 0, end: 9 });
  assert.deepEqual(parseRange('bytes=90-', 100), { kind: 'range', start: 90, end: 99 });
  assert.deepEqual(parseRange('bytes=-10', 100), { kind: 'range', start: 90, end: 99 });
  assert.deepEqual(parseRange('bytes=50-1000', 100), { kind: 'range', start: 50, end: 99 });
  assert.deepEqual(parseRange('bytes=100-', 100), { kind: 'unsatisfiable' });
  assert.deepEqual(parseRange('bytes=0-1,5-6', 100), { kind: 'none' });
  assert.deepEqual(parseRange('items=0-1', 100), { kind: 'none' });
});

test('WWW-Authenticate challenges keep commas inside quoted scopes', () => {
  const challenge = parseWwwAuthenticate('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"');
  assert.deepEqual(challenge, {
    scheme: 'bearer',
    params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull,push' },
  });
  assert.equal(parseWwwAuthenticate('Basic realm="Registry Realm"')?.scheme, 'basic');
  assert.equal(parseWwwAuthenticate(undefined), undefined);
});
