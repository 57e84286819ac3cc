// Second guard behind scripts/ensure-test-tools.mjs: a test that needs an external program
// fails loudly, with the command that installs it, instead of being skipped.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Absolute path of `command` on PATH, or undefined. */
export function findOnPath(command: string): string | undefined {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter((dir) => dir !== '');
  for (const dir of dirs) {
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

/**
 * Returns the absolute path of `command`, or throws an Error whose message carries the exact
 * install command (`apt-get install -y <debPackage>`).
 */
export function requireTool(command: string, debPackage: string): string {
  const found = findOnPath(command);
  if (found === undefined) {
    throw new Error(
      `required test tool "${command}" is not on PATH; install it with: apt-get install -y ${debPackage}` +
        ` (or run: node scripts/ensure-test-tools.mjs)`,
    );
  }
  return found;
}
