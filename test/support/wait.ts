/**
 * Waiting helpers for tests: every wait has a deadline and a description, so a failure says what
 * never happened instead of hanging. No fixed sleeps: waits end as soon as the condition holds.
 */
import type { EventEmitter } from 'node:events';

export class WaitTimeoutError extends Error {
  constructor(what: string, timeoutMs: number, detail?: string) {
    super(`timed out after ${timeoutMs} ms waiting for ${what}${detail ? `: ${detail}` : ''}`);
    this.name = 'WaitTimeoutError';
  }
}

/** Resolve with `promise`, or reject with a WaitTimeoutError naming `what` after `timeoutMs`. */
export async function withDeadline<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new WaitTimeoutError(what, timeoutMs)), timeoutMs);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Re-check a condition until it returns a value other than undefined/false. For state that only
 * a query can show (the server's participant list, a database row); prefer events where they exist.
 */
export async function eventually<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  opts: { timeoutMs: number; what: string; intervalMs?: number },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      throw new WaitTimeoutError(opts.what, opts.timeoutMs, lastError ? String(lastError) : undefined);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
}

/** The next `event` from `emitter` whose arguments satisfy `match`. */
export function nextEvent<A extends unknown[]>(
  emitter: EventEmitter | { on: (e: string, l: (...a: A) => void) => unknown; off: (e: string, l: (...a: A) => void) => unknown },
  event: string,
  opts: { timeoutMs: number; what: string; match?: (...args: A) => boolean },
): Promise<A> {
  const em = emitter as { on: (e: string, l: (...a: A) => void) => unknown; off: (e: string, l: (...a: A) => void) => unknown };
  let listener: ((...args: A) => void) | undefined;
  const p = new Promise<A>((resolve) => {
    listener = (...args: A) => {
      if (!opts.match || opts.match(...args)) resolve(args);
    };
    em.on(event, listener);
  });
  return withDeadline(p, opts.timeoutMs, opts.what).finally(() => {
    if (listener) em.off(event, listener);
  });
}

/**
 * A list that tests can wait on: items arrive from events; `waitFor` resolves with the first item
 * (already seen or yet to come) that matches.
 */
export class Inbox<T> {
  readonly items: T[] = [];
  #waiters = new Set<{ match: (item: T) => boolean; resolve: (item: T) => void }>();

  push(item: T): void {
    this.items.push(item);
    for (const w of this.#waiters) {
      if (w.match(item)) {
        this.#waiters.delete(w);
        w.resolve(item);
      }
    }
  }

  /** With `since` (an earlier `items.length`), only an item that arrived after that counts. */
  waitFor(match: (item: T) => boolean, timeoutMs: number, what: string, since = 0): Promise<T> {
    const seen = this.items.find((item, i) => i >= since && match(item));
    if (seen !== undefined) return Promise.resolve(seen);
    let waiter: { match: (item: T) => boolean; resolve: (item: T) => void } | undefined;
    const p = new Promise<T>((resolve) => {
      waiter = { match, resolve };
      this.#waiters.add(waiter);
    });
    return withDeadline(p, timeoutMs, what).catch((err: unknown) => {
      if (waiter) this.#waiters.delete(waiter);
      if (err instanceof WaitTimeoutError) {
        throw new WaitTimeoutError(what, timeoutMs, `saw ${this.items.length} item(s): ${JSON.stringify(this.items).slice(0, 2000)}`);
      }
      throw err;
    });
  }
}
