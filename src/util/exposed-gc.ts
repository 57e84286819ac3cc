// V8 exposes no collection to JS except through --expose-gc; setting the flag at run time gives a
// `gc` function to new contexts only, so the global scope of the process stays as it was.
// Per isolate: a worker thread that imports this gets its own heap's gc.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export type GcFunction = (options?: { type: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void;

let gc: GcFunction | undefined;

/** This isolate's gc; a no-op on a Node that no longer hands it out this way (a cost, never a failure). */
export function exposedGc(): GcFunction {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    const exposed: unknown = runInNewContext('gc');
    gc = typeof exposed === 'function' ? (exposed as GcFunction) : () => undefined;
  }
  return gc;
}
