// The Redis connection shared by every Redis-backed port, and what happens when Redis is away.
//
// Commands fail fast while the connection is down (no offline queue): a request must never
// hang on a missing Redis. Each port then falls back to working uncoordinated (in-process
// locks and leases, the metadata store for private marks) and calls `uncoordinated()`, which
// counts it per port and logs a warning at most every few seconds. The client reconnects by
// itself; when it is back, `onReady` listeners resynchronise what they could not write.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { createClient } from 'redis';
import type { z } from 'zod';
import { zeroPerPort, type CoordinationPort, type CoordinationStatus } from './ports.js';

/** Commands fail at once while disconnected; reconnection goes on for as long as the process runs. */
function newClient(url: string, connectTimeoutMs: number) {
  return createClient({
    url,
    disableOfflineQueue: true,
    socket: {
      connectTimeout: connectTimeoutMs,
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** Math.min(retries, 6), MAX_RECONNECT_DELAY_MS),
    },
  });
}

export type RedisClient = ReturnType<typeof newClient>;

export interface RedisConnectionOptions {
  url: string;
  log: Logger;
  /** Prefix of every key and channel; replicas that coordinate share it. */
  keyPrefix?: string;
  /** How long start-up waits for a first connection before going on uncoordinated. */
  connectTimeoutMs?: number;
}

const WARN_INTERVAL_MS = 10_000;
const COMMAND_TIMEOUT_MS = 2000;
const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
/** Reconnect attempts back off to this delay and keep going for as long as the process runs. */
const MAX_RECONNECT_DELAY_MS = 2000;

export class CoordinationError extends Error {
  constructor(
    readonly code: 'LOCK_TIMEOUT',
    message: string,
    readonly context: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'CoordinationError';
  }
}

/**
 * The client with a deadline on every command. node-redis's own command timeout stops at the
 * socket write, so on a Redis that stopped answering (a hung server, a network dropping
 * packets) with the connection still open, a command would wait forever and so would the
 * request behind it. A late reply is still matched to its command by the client and dropped.
 */
function withDeadlines(client: RedisClient, timeoutMs: number): RedisClient {
  return new Proxy(client, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const result: unknown = (value as (...a: unknown[]) => unknown).apply(target, args);
        return result instanceof Promise ? beforeDeadline(result, timeoutMs, String(property)) : result;
      };
    },
  });
}

function beforeDeadline<T>(promise: Promise<T>, timeoutMs: number, command: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis did not answer ${command} within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

export class RedisConnection {
  /** Commands through this fail after COMMAND_TIMEOUT_MS without an answer. */
  readonly client: RedisClient;
  readonly keyPrefix: string;
  /** This process's id in messages and lease tokens. */
  readonly instanceId = randomUUID();
  readonly log: Logger;
  private readonly counts = zeroPerPort();
  private readonly lastWarned = new Map<CoordinationPort, number>();
  private readonly readyListeners = new Set<() => void>();
  /** One subscriber connection for every channel of this process (a subscriber can do nothing else). */
  private subscriber: { client: RedisClient; connected: Promise<unknown> } | undefined;
  private wasReady = false;
  private lostLogged = false;
  private closed = false;

  private constructor(
    private readonly options: RedisConnectionOptions,
    private readonly rawClient: RedisClient,
  ) {
    const client = rawClient;
    this.client = withDeadlines(rawClient, COMMAND_TIMEOUT_MS);
    this.keyPrefix = options.keyPrefix ?? 'longshore:';
    this.log = options.log;
    // Without an 'error' listener a connection error would crash the process.
    client.on('error', (error: Error) => {
      if (this.closed || this.lostLogged) return;
      this.lostLogged = true;
      this.log.warn({ redis: redactUrl(options.url), err: error.message }, 'Redis unreachable: serving uncoordinated until it returns');
    });
    client.on('ready', () => {
      if (this.wasReady) this.log.info({ redis: redactUrl(options.url) }, 'Redis reachable again: coordinating');
      this.wasReady = true;
      this.lostLogged = false;
      for (const listener of this.readyListeners) listener();
    });
  }

  /**
   * Connects, waiting at most `connectTimeoutMs`; when Redis is not there yet the process goes
   * on uncoordinated and the client keeps trying in the background.
   */
  static async open(options: RedisConnectionOptions): Promise<RedisConnection> {
    const client = newClient(options.url, options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
    const connection = new RedisConnection(options, client);
    await connection.waitForFirstConnection(options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
    return connection;
  }

  /** A second connection with the same options (subscribers need one of their own). */
  duplicate(): RedisClient {
    const client = this.rawClient.duplicate();
    client.on('error', () => undefined); // reported once through the main connection
    return client;
  }

  /**
   * Listens on `channel` through this process's subscriber connection, which resubscribes by
   * itself after a reconnection. Resolves once subscribed: with Redis away, when it returns.
   */
  async listen(channel: string, listener: (message: string) => void): Promise<void> {
    if (!this.subscriber) {
      const client = this.duplicate();
      this.subscriber = { client, connected: client.connect() };
    }
    const { client, connected } = this.subscriber;
    await connected;
    await client.subscribe(channel, listener);
  }

  /**
   * Announces `payload` to the other replicas listening on `channel` (with `subscribeOthers`);
   * a failure is counted against `port` and the message is lost, as pub/sub messages are.
   */
  announce(channel: string, port: CoordinationPort, payload: unknown, context: Record<string, unknown> = {}): Promise<void> {
    return this.client
      .publish(channel, JSON.stringify({ origin: this.instanceId, payload }))
      .then(() => undefined)
      .catch((error: unknown) => this.uncoordinated(port, error, context));
  }

  /**
   * Hands `deliver` every well-formed payload another replica announced on `channel`: this
   * replica's own messages and malformed ones (logged) are dropped. Subscribing is waited for
   * only while Redis is reachable; otherwise the subscriber joins when it returns.
   */
  async subscribeOthers<T>(channel: string, port: CoordinationPort, payloadSchema: z.ZodType<T>, deliver: (payload: T) => void): Promise<void> {
    const received = (text: string): void => {
      let message: { origin: unknown; payload: unknown };
      let payload: T;
      try {
        message = JSON.parse(text) as { origin: unknown; payload: unknown };
        payload = payloadSchema.parse(message.payload);
      } catch (error) {
        this.log.warn({ channel, err: (error as Error).message }, 'ignored a malformed message from Redis');
        return;
      }
      if (message.origin !== this.instanceId) deliver(payload);
    };
    const subscribing = this.listen(channel, received).catch((error: unknown) => this.uncoordinated(port, error, { step: 'subscribe' }));
    if (this.connected) await subscribing;
  }

  key(name: string): string {
    return `${this.keyPrefix}${name}`;
  }

  get connected(): boolean {
    return this.rawClient.isReady;
  }

  /** Calls `listener` every time the connection becomes ready again. Returns the remover. */
  onReady(listener: () => void): () => void {
    this.readyListeners.add(listener);
    return () => this.readyListeners.delete(listener);
  }

  /** Counts (and logs, rate-limited) an operation that went ahead without Redis. */
  uncoordinated(port: CoordinationPort, error: unknown, context: Record<string, unknown> = {}): void {
    this.counts[port] += 1;
    const now = Date.now();
    if (now - (this.lastWarned.get(port) ?? 0) < WARN_INTERVAL_MS) return;
    this.lastWarned.set(port, now);
    this.log.warn({ port, ...context, err: (error as Error).message, uncoordinatedSoFar: this.counts[port] }, 'Redis unreachable: working uncoordinated');
  }

  status(): CoordinationStatus {
    return { mode: 'redis', connected: this.connected, uncoordinated: { ...this.counts } };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.readyListeners.clear();
    // destroy(): a graceful quit would wait for a Redis that may be gone.
    if (this.subscriber?.client.isOpen) this.subscriber.client.destroy();
    if (this.rawClient.isOpen) this.rawClient.destroy();
    return Promise.resolve();
  }

  private async waitForFirstConnection(timeoutMs: number): Promise<void> {
    const connecting = this.rawClient.connect().then(
      () => true,
      (error: unknown) => {
        this.log.warn({ redis: redactUrl(this.options.url), err: (error as Error).message }, 'Redis connection failed');
        return false;
      },
    );
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const ready = await Promise.race([connecting, timedOut]);
    clearTimeout(timer);
    if (!ready) this.log.warn({ redis: redactUrl(this.options.url), waitedMs: timeoutMs }, 'Redis not reachable at start: serving uncoordinated, still trying');
  }
}

/** The URL without its password, for logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparsable Redis URL)';
  }
}
