/** Small promise helpers with deadlines and cancellation, shared by the summarizer and the transfer. */

/** `promise`, unless `signal` aborts first (then the abort reason). */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  // The losing promise may reject later; nobody awaits it any more.
  promise.catch(() => undefined);
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** `promise`, or a rejection with `message` after `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(message)), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

/** The value of `promise` if it settles within `ms`, else `fallback` (also on rejection). */
export async function settledWithin<T>(promise: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<T>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)));
  try {
    return await Promise.race([promise.catch(() => fallback), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Settles as `promise` does, or resolves (undefined) after `ms`: wait for it, but not for long. */
export async function atMost<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Waits for one step of a clean-up or start-up (a native disconnect, a session close) at most `ms`,
 * and says in the log which step it gave up on, or which failed. An SDK call whose answer never
 * comes must not keep a transfer from ending; the log line is how anyone finds out it happened.
 * Resolves true when the step finished in time.
 */
export async function boundedStep(
  promise: Promise<unknown>,
  ms: number,
  what: string,
  log: { warn: (obj: object, msg: string) => void },
): Promise<boolean> {
  const done = await atMost(
    promise.then(
      () => true,
      (err: unknown) => {
        log.warn({ err }, `${what} failed`);
        return true;
      },
    ),
    ms,
  );
  if (done) return true;
  log.warn({ timeoutMs: ms }, `${what} did not finish within ${ms} ms; going on without it`);
  return false;
}
