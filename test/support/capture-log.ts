/** A StoreLogger that keeps what it is told, so tests can check what the store logged. */
import type { StoreLogger } from '../../db/write-queue.js';

export interface LogLine {
  level: 'info' | 'warn' | 'error';
  msg: string;
  obj: Record<string, unknown>;
}

export function captureLog(): { log: StoreLogger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const make = (bindings: Record<string, unknown>): StoreLogger => {
    const at =
      (level: LogLine['level']) =>
      (obj: object, msg?: string): void => {
        lines.push({ level, msg: msg ?? '', obj: { ...bindings, ...obj } });
      };
    return { info: at('info'), warn: at('warn'), error: at('error'), child: (b) => make({ ...bindings, ...b }) };
  };
  return { log: make({}), lines };
}
