/**
 * Messages between the store (main thread) and the database thread. One request at a time is
 * executed by the thread, in arrival order, so writes leave in the order they were sent.
 */
import type { DatabaseTarget } from './config.js';
import type { SerializedError } from './errors.js';
import type { OpenTransfersQuery, TransferFilter, WriteOp } from './types.js';

export interface ThreadConfig {
  target: DatabaseTarget;
  busyTimeoutMs: number;
}

/** A call of one `RecordReads` method. */
export type ReadCall =
  | { method: 'listTransfers'; arg: TransferFilter }
  | { method: 'getTransfer'; arg: string }
  | { method: 'listOpenTransfers'; arg: OpenTransfersQuery };

export type ThreadRequest =
  | { id: number; type: 'open' }
  | { id: number; type: 'write'; ops: WriteOp[] }
  | ({ id: number; type: 'read' } & ReadCall)
  | { id: number; type: 'close' };

export type ThreadResponse =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: SerializedError };
