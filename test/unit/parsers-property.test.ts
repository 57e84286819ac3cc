// Property-based tests (fast-check) over every parser that takes outside input: references,
// digests, Range, WWW-Authenticate, v1 paths, ids and image lists, and configuration. Each
// either answers or throws the protocol's own error (RegistryError, V1Error, ConfigError):
// never a TypeError, RangeError or URIError, which would reach a client as a 500.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { parseByteSize, parseDuration } from '../../src/config/units.js';
import { parseDigest, tryParseDigest } from '../../src/protocol/digest.js';
import { RegistryError } from '../../src/protocol/errors.js';
import { parseAccept } from '../../src/protocol/media-types.js';
import { parseRange } from '../../src/protocol/range.js';
import { isValidRepositoryName, isValidTag, parseManifestReference, parseV2Path } from '../../src/protocol/reference.js';
import { assertImageId, isValidV1Tag, parseImageList, parseV1Path, V1Error } from '../../src/protocol/v1.js';
import { parseWwwAuthenticate } from '../../src/upstream/www-authenticate.js';

const RUNS = { numRuns: 2000 };

/** Runs `parse`; passes when it answers or throws one of `allowed`, fails on any other throw. */
function onlyThrows(allowed: ReadonlyArray<new (...args: never[]) => Error>, parse: () => unknown): unknown {
  try {
    return parse();
  } catch (error) {
    if (allowed.some((kind) => error instanceof kind)) return undefined;
    throw new Error(`threw ${(error as Error).name}: ${(error as Error).message}`, { cause: error });
  }
}

// Strings that look like what attackers send: path and URL pieces, escapes, NUL, unicode.
const hostile = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.array(fc.constantFrom('/', '%', '%2F', '%00', '%E0', '..', ':', '@', 'sha256', 'a', '0', 'tags', 'manifests', 'blobs', 'uploads', 'images', 'repositories', 'users', '\u0000', '\\', '"', ','), { maxLength: 12 }).map((parts) => parts.join('')),
);
const hex = (length: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${length}}$`));

test('digests: any text parses or is DIGEST_INVALID; sha256/sha512 of the right length round-trip', () => {
  fc.assert(
    fc.property(hostile, (text) => {
      const digest = tryParseDigest(text);
      if (digest) assert.equal(digest.text, text);
      onlyThrows([RegistryError], () => parseDigest(text));
    }),
    RUNS,
  );
  fc.assert(
    fc.property(fc.oneof(hex(64).map((h) => `sha256:${h}`), hex(128).map((h) => `sha512:${h}`)), (text) => {
      assert.equal(parseDigest(text).text, text);
    }),
  );
});

test('manifest references and v2 paths: answers or RegistryError, and what is returned is valid', () => {
  fc.assert(
    fc.property(hostile, (text) => {
      const reference = onlyThrows([RegistryError], () => parseManifestReference(text)) as ReturnType<typeof parseManifestReference> | undefined;
      if (reference?.kind === 'tag') assert.ok(isValidTag(reference.tag));
      const route = parseV2Path(text);
      if (route && 'name' in route) assert.equal(typeof route.name, 'string');
    }),
    RUNS,
  );
  fc.assert(
    fc.property(fc.stringMatching(/^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+){0,3}$/), fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,20}$/), (name, tag) => {
      assert.equal(isValidRepositoryName(name), name.length <= 255);
      assert.deepEqual(parseV2Path(`${name}/manifests/${tag}`), { kind: 'manifest', name, reference: tag });
    }),
  );
});

test('Range: never throws, and a satisfiable range lies inside the blob', () => {
  const header = fc.oneof(
    hostile,
    fc.tuple(fc.option(fc.nat()), fc.option(fc.nat())).map(([a, b]) => `bytes=${a ?? ''}-${b ?? ''}`),
    fc.tuple(fc.bigInt({ min: 0n, max: 10n ** 30n }), fc.bigInt({ min: 0n, max: 10n ** 30n })).map(([a, b]) => `bytes=${a}-${b}`),
  );
  fc.assert(
    fc.property(fc.option(header, { nil: undefined }), fc.nat({ max: 2 ** 40 }), (value, size) => {
      const range = parseRange(value, size);
      if (range.kind === 'range') {
        assert.ok(Number.isSafeInteger(range.start) && Number.isSafeInteger(range.end), JSON.stringify(range));
        assert.ok(range.start >= 0 && range.start <= range.end && range.end < size, JSON.stringify({ value, size, range }));
      }
    }),
    RUNS,
  );
});

test('WWW-Authenticate: never throws; realm, service and scope come back as they were quoted', () => {
  fc.assert(
    fc.property(fc.oneof(hostile, fc.array(hostile, { maxLength: 3 })), (value) => {
      const challenge = parseWwwAuthenticate(value);
      if (challenge) assert.equal(challenge.scheme, challenge.scheme.toLowerCase());
    }),
    RUNS,
  );
  const quotable = fc.string().filter((s) => !s.includes('\\'));
  fc.assert(
    fc.property(quotable, quotable, quotable, (realm, service, scope) => {
      const quote = (s: string) => `"${s.replace(/"/g, '\\"')}"`;
      const challenge = parseWwwAuthenticate(`Bearer realm=${quote(realm)},service=${quote(service)},scope=${quote(scope)}`);
      assert.deepEqual(challenge, { scheme: 'bearer', params: { realm, service, scope } });
    }),
    RUNS,
  );
});

test('v1 paths: answers or V1Error; a tag route always carries a valid tag, an image route a 64-hex id or a 400 later', () => {
  fc.assert(
    fc.property(hostile, (rest) => {
      const route = onlyThrows([V1Error], () => parseV1Path(`/v1/${rest}`)) as ReturnType<typeof parseV1Path>;
      if (route?.kind === 'tag') assert.ok(isValidV1Tag(route.tag), route.tag);
      if (route?.kind === 'user') assert.ok(!/[\0/]/.test(route.username));
      if (route?.kind === 'image') onlyThrows([V1Error], () => assertImageId(route.id));
    }),
    RUNS,
  );
  fc.assert(
    fc.property(fc.string(), (tag) => {
      const route = onlyThrows([V1Error], () => parseV1Path(`/v1/repositories/corp/app/tags/${encodeURIComponent(tag)}`)) as ReturnType<typeof parseV1Path>;
      if (route?.kind === 'tag') assert.equal(route.tag, tag);
      else assert.ok(!isValidV1Tag(tag), `valid tag ${JSON.stringify(tag)} was refused`);
    }),
    RUNS,
  );
});

test('v1 image ids and image lists: answers or V1Error (400) for any JSON', () => {
  fc.assert(
    fc.property(fc.oneof(hostile, hex(64)), (id) => {
      const ok = onlyThrows([V1Error], () => assertImageId(id));
      assert.equal(ok !== undefined, /^[a-f0-9]{64}$/.test(id));
    }),
    RUNS,
  );
  const entry = fc.oneof(fc.record({ id: fc.oneof(hex(64), fc.string()), Tag: fc.option(fc.string(), { nil: undefined }) }), fc.jsonValue());
  fc.assert(
    fc.property(fc.oneof(fc.array(entry, { maxLength: 5 }), fc.jsonValue()), (body) => {
      onlyThrows([V1Error], () => parseImageList(body));
    }),
    RUNS,
  );
});

test('Accept headers, durations and sizes: never throw on any text', () => {
  fc.assert(
    fc.property(fc.oneof(hostile, fc.array(hostile, { maxLength: 4 })), (value) => {
      assert.ok(Array.isArray(parseAccept(value)));
    }),
    RUNS,
  );
  fc.assert(
    fc.property(fc.oneof(hostile, fc.double(), fc.integer()), (value) => {
      const ms = parseDuration(value);
      const bytes = parseByteSize(value);
      if (ms !== undefined) assert.ok(Number.isFinite(ms) && ms >= 0, `duration ${String(value)} -> ${ms}`);
      if (bytes !== undefined) assert.ok(Number.isFinite(bytes) && bytes >= 0, `size ${String(value)} -> ${bytes}`);
    }),
    RUNS,
  );
});

test('configuration: any document and any LONGSHORE_ variables give a config or a ConfigError', () => {
  const keys = ['listen', 'publicUrl', 'logLevel', 'storage', 'private', 'auth', 'api', 'offline', 'http', 'metrics', 'upstreams', 'shutdownGracePeriod'];
  const value = fc.oneof(fc.jsonValue(), fc.dictionary(fc.constantFrom('path', 'delete', 'cache', 'maxBytes', 'namespaces', 'htpasswd', 'loginFailures', 'perUser', 'headersTimeout', 'name', 'url', 'tokenRealms', 'timeout'), fc.jsonValue()));
  const document = fc.oneof(fc.jsonValue(), fc.dictionary(fc.constantFrom(...keys), value));
  const envName = fc.array(fc.constantFrom('STORAGE', 'PATH', 'AUTH', 'HTTP', 'HEADERS_TIMEOUT', 'UPSTREAMS', '0', '1', 'URL', 'LOGIN_FAILURES', 'PER_USER', 'X', ''), { minLength: 1, maxLength: 4 }).map((parts) => `LONGSHORE_${parts.join('__')}`);
  const env = fc.dictionary(envName, fc.oneof(fc.string(), fc.constantFrom('5m', '[a, b]', 'true', '{', '10GiB', '-1', 'null')), { maxKeys: 3 });
  fc.assert(
    fc.property(document, env, (raw, variables) => {
      onlyThrows([ConfigError], () => parseConfig(raw, variables));
    }),
    { numRuns: 1000 },
  );
});
