// One serving process per data directory. `serve` takes <storage.path>/longshore.lock (its
// pid, host and address) and removes it on exit; a lock whose process is gone (a crash, a
// SIGKILL) is stale and taken over. Tools find a running server through it and go through
// its API instead of writing beside it.
import { hostname } from 'node:os';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

export const LOCK_FILE = 'longshore.lock';

export interface LockHolder {
  pid: number;
  host: string;
  /** The address the holder answers on (set once it listens). */
  address?: string;
  startedAt: string;
}

export class DataDirectoryLocked extends Error {
  readonly code = 'DATA_DIRECTORY_LOCKED';
  constructor(
    readonly directory: string,
    readonly holder: LockHolder,
  ) {
    super(`storage.path ${directory} is in use by Longshore process ${holder.pid} on ${holder.host}${holder.address ? ` (${holder.address})` : ''}`);
    this.name = 'DataDirectoryLocked';
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, it is just not ours to signal.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The live holder of `directory`'s lock, if any. A lock from another host counts as live: its pid means nothing here. */
export async function lockHolder(directory: string): Promise<LockHolder | undefined> {
  let text: string;
  try {
    text = await readFile(path.join(directory, LOCK_FILE), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let holder: LockHolder;
  try {
    holder = JSON.parse(text) as LockHolder;
  } catch {
    return undefined; // a torn write from a crash mid-start: nobody holds it
  }
  if (holder.host === hostname() && (holder.pid === process.pid || !isAlive(holder.pid))) return undefined;
  return holder;
}

export interface DataDirectoryLock {
  /** Records the address the server answers on, for tools that look for it. */
  setAddress(address: string): Promise<void>;
  release(): Promise<void>;
}

export async function acquireDataDirectoryLock(directory: string): Promise<DataDirectoryLock> {
  const file = path.join(directory, LOCK_FILE);
  const holder: LockHolder = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString() };
  const write = () => writeFile(file, JSON.stringify(holder), { flag: 'wx', mode: 0o644 });
  try {
    await write();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const current = await lockHolder(directory);
    if (current) throw new DataDirectoryLocked(directory, current);
    // Stale: the process that wrote it is gone. Two starters racing here both see it stale;
    // the exclusive create below lets only one of them win.
    await rm(file, { force: true });
    await write().catch((retryError: unknown) => {
      throw (retryError as NodeJS.ErrnoException).code === 'EEXIST' ? new DataDirectoryLocked(directory, { ...holder, pid: -1, host: 'another starter' }) : retryError;
    });
  }
  return {
    setAddress: async (address) => {
      holder.address = address;
      await writeFile(file, JSON.stringify(holder));
    },
    release: () => rm(file, { force: true }),
  };
}
