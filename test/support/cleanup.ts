// Cleanups that run in reverse order of registration (like `defer`), so a server is stopped
// before the directory it writes to is removed. node:test runs t.after hooks in order.
import type { TestContext } from 'node:test';

const stacks = new WeakMap<TestContext, Array<() => unknown>>();

export function onCleanup(t: TestContext, cleanup: () => unknown): void {
  let stack = stacks.get(t);
  if (!stack) {
    const created: Array<() => unknown> = [];
    stacks.set(t, created);
    t.after(async () => {
      for (let next = created.pop(); next; next = created.pop()) await next();
    });
    stack = created;
  }
  stack.push(cleanup);
}
