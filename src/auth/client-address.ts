// The address of the client a request came from, for the failed-login limits. Credentials are
// checked deep inside both APIs' access code, which sees headers only; rather than thread the
// address through every call, the app runs each request inside this context (app.ts).
import { AsyncLocalStorage } from 'node:async_hooks';

const clientAddress = new AsyncLocalStorage<string>();

/** Runs `next` (the rest of the request) with `address` as the current client address. */
export function runWithClientAddress(address: string, next: () => void): void {
  clientAddress.run(address, next);
}

/** The current request's client address; undefined outside a request (CLI, tests). */
export function currentClientAddress(): string | undefined {
  return clientAddress.getStore();
}
