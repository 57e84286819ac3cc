// Temporary directories under os.tmpdir(), each removed by the test that made it.
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TempDir {
  readonly path: string;
  /** Removes the directory and everything in it; safe to call twice. */
  remove(): Promise<void>;
}

// Safety net: directories not removed by the time the test process exits (a test that only
// called stop(), a crash in set-up) are removed synchronously on exit. Children started by
// the harness are SIGKILLed on exit too (processes.ts), so nothing keeps writing into them.
const notYetRemoved = new Set<string>();
let exitHookInstalled = false;
function removeAtExit(path: string): void {
  notYetRemoved.add(path);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const leftover of notYetRemoved) {
      try {
        rmSync(leftover, { recursive: true, force: true, maxRetries: 3 });
      } catch (error) {
        console.error(`could not remove temp dir ${leftover} at exit: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  });
}

export async function makeTempDir(prefix: string): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), `longshore-${prefix}-`));
  removeAtExit(path);
  return {
    path,
    remove: async () => {
      await rm(path, { recursive: true, force: true });
      notYetRemoved.delete(path);
    },
  };
}
