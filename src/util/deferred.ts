// Promise.withResolvers arrived in Node 22; we support Node 20.
export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * Wakes everyone waiting for the next change of something (bytes landing, a state change):
 * next() resolves at the following fire(), never with a past one.
 */
export class ChangeSignal {
  private current = deferred<void>();

  next(): Promise<void> {
    return this.current.promise;
  }

  fire(): void {
    const fired = this.current;
    this.current = deferred<void>();
    fired.resolve();
  }
}
