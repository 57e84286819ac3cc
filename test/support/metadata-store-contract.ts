// The contract every metadata driver passes, through the MetadataStore callers use (the
// driver plus the coordinator's locks). A driver's test file calls
// `metadataStoreContract(name, createDriver)`; fs and memory run it in metadata-store.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InProcessLocks } from '../../src/coordination/in-process.js';
import { CoordinatedMetadataStore, DELETE_RECORD, type MetadataDriver, type MetadataStore } from '../../src/storage/metadata-store.js';

export function metadataStoreContract(driver: string, createDriver: () => Promise<MetadataDriver>): void {
  const open = async (): Promise<MetadataStore> => new CoordinatedMetadataStore(await createDriver(), new InProcessLocks());

  test(`${driver} metadata: records round-trip, are copies, and delete says whether there was one`, async () => {
    const store = await open();
    const value = { digest: 'sha256:x', nested: { list: [1, 2] } };
    await store.put('mirror/hub/library/alpine/_tags/latest', value);
    value.nested.list.push(3); // changing the caller's object changes nothing stored
    const read = await store.get<typeof value>('mirror/hub/library/alpine/_tags/latest');
    assert.ok(read);
    assert.deepEqual(read, { digest: 'sha256:x', nested: { list: [1, 2] } });
    read.digest = 'changed';
    assert.equal((await store.get<typeof value>('mirror/hub/library/alpine/_tags/latest'))?.digest, 'sha256:x');
    assert.equal(await store.get('mirror/hub/library/alpine/_tags/none'), undefined);
    await store.put('mirror/hub/library/alpine/_tags/latest', { digest: 'sha256:y' });
    assert.deepEqual(await store.get('mirror/hub/library/alpine/_tags/latest'), { digest: 'sha256:y' });
    assert.equal(await store.delete('mirror/hub/library/alpine/_tags/latest'), true);
    assert.equal(await store.delete('mirror/hub/library/alpine/_tags/latest'), false);
    assert.equal(await store.get('mirror/hub/library/alpine/_tags/latest'), undefined);
  });

  test(`${driver} metadata: list names one level down, sorted, records and sub-trees alike, each once`, async () => {
    const store = await open();
    await store.put('local/team/app/_tags/v2', { digest: 'b' });
    await store.put('local/team/app/_tags/v1', { digest: 'a' });
    await store.put('local/team/app/_layers/sha256/ab', { size: 1 });
    await store.put('local/team/app', { stray: true }); // a record and a sub-tree of one name
    await store.put('local/team/other/_tags/x', { digest: 'c' });
    assert.deepEqual(await store.list('local/team/app/_tags'), ['v1', 'v2']);
    assert.deepEqual(await store.list('local/team/app'), ['_layers', '_tags']);
    assert.deepEqual(await store.list('local/team'), ['app', 'other']);
    assert.deepEqual(await store.list('local/none'), []);
    assert.deepEqual(await store.list('local/team/app/_tags/v1'), [], 'a record has nothing below it');
    assert.ok((await store.list('')).includes('local'));
  });

  test(`${driver} metadata: keys that could escape are refused`, async () => {
    const store = await open();
    await assert.rejects(store.put('mirror/../../etc/passwd', {}), /unsafe metadata key/);
    await assert.rejects(store.get('a//b'), /unsafe metadata key/);
    await assert.rejects(store.list('/abs'), /unsafe metadata key/);
    await assert.rejects(store.update('x/.hidden', () => ({})), /unsafe metadata key/);
  });

  test(`${driver} metadata: putIfAbsent creates once; the first writer of many wins`, async () => {
    const store = await open();
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => store.putIfAbsent('v1/images/abc', { writer: i })));
    assert.equal(results.filter(Boolean).length, 1, 'exactly one call created it');
    const winner = results.indexOf(true);
    assert.deepEqual(await store.get('v1/images/abc'), { writer: winner });
    assert.equal(await store.putIfAbsent('v1/images/abc', { writer: 'late' }), false);
  });

  test(`${driver} metadata: concurrent updates of one key lose nothing`, async () => {
    const store = await open();
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        store.update<{ ids: number[] }>('v1/repositories/ns/app/_index', async (current) => {
          // A pause between read and write: without the lock, updates would overwrite each other.
          await new Promise((resolve) => setImmediate(resolve));
          return { ids: [...(current?.ids ?? []), i] };
        }),
      ),
    );
    const final = await store.get<{ ids: number[] }>('v1/repositories/ns/app/_index');
    assert.deepEqual([...(final?.ids ?? [])].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i));
  });

  test(`${driver} metadata: an update can keep, delete, or refuse, and says what is stored after`, async () => {
    const store = await open();
    assert.deepEqual(await store.update('a/b', () => ({ n: 1 })), { n: 1 });
    assert.deepEqual(await store.update<{ n: number }>('a/b', () => undefined), { n: 1 }, 'undefined keeps the record');
    await assert.rejects(
      store.update('a/b', () => {
        throw new Error('refused');
      }),
      /refused/,
    );
    assert.deepEqual(await store.get('a/b'), { n: 1 }, 'a throwing change writes nothing');
    assert.equal(await store.update('a/b', () => DELETE_RECORD), undefined);
    assert.equal(await store.get('a/b'), undefined);
    assert.equal(await store.update('a/none', () => undefined), undefined, 'nothing created when the change declines');
    assert.deepEqual(await store.list('a'), []);
  });
}
