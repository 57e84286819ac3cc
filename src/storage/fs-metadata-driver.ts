// Filesystem metadata driver: one JSON file per key under <root>/meta, written to a temp
// file and renamed, so a reader (or a crash) never sees half a record.
import { mkdir, readFile, readdir, rename, unlink, writeFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { assertSafeKey, type MetadataDriver } from './metadata-store.js';

const RECORD_SUFFIX = '.json';

export class FsMetadataDriver implements MetadataDriver {
  constructor(
    private readonly root: string,
    private readonly tmpDir: string,
  ) {}

  private fileFor(key: string): string {
    assertSafeKey(key);
    return path.join(this.root, key + RECORD_SUFFIX);
  }

  async get<T>(key: string): Promise<T | undefined> {
    try {
      return JSON.parse(await readFile(this.fileFor(key), 'utf8')) as T;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new Error(`cannot read metadata "${key}": ${(error as Error).message}`, { cause: error });
    }
  }

  async put(key: string, value: unknown): Promise<void> {
    const file = this.fileFor(key);
    const temp = path.join(this.tmpDir, `meta-${randomUUID()}`);
    try {
      await writeFile(temp, JSON.stringify(value)).catch(async (error: unknown) => {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        await mkdir(this.tmpDir, { recursive: true });
        await writeFile(temp, JSON.stringify(value));
      });
      // Directories are made on the first write below them, not checked on every put.
      await rename(temp, file).catch(async (error: unknown) => {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        await mkdir(path.dirname(file), { recursive: true });
        await rename(temp, file);
      });
    } catch (error) {
      await unlink(temp).catch(() => undefined);
      throw error;
    }
  }

  async delete(key: string): Promise<boolean> {
    try {
      await unlink(this.fileFor(key));
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw error;
    }
  }

  async list(prefix: string): Promise<string[]> {
    if (prefix) assertSafeKey(prefix);
    try {
      const entries = await readdir(path.join(this.root, prefix), { withFileTypes: true });
      // A record and a sub-tree of the same name ("x.json" and "x/") are one name.
      const names = new Set(entries.map((e) => (e.isFile() && e.name.endsWith(RECORD_SUFFIX) ? e.name.slice(0, -RECORD_SUFFIX.length) : e.name)));
      return [...names].sort();
    } catch (error) {
      // ENOTDIR: the prefix is a record, which has nothing below it.
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return [];
      throw error;
    }
  }
}
