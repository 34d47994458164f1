/**
 * The transfer lifecycle vocabulary shared by the orchestrator (agent/transfer.ts), the record
 * store (db/) and the history command. One place, so a new phase or outcome cannot drift.
 */

/** Phases a transfer moves through, in order. `ended` is entered with a terminal outcome. */
export const TRANSFER_PHASES = [
  'requested',
  'summarizing',
  'offering',
  'briefing',
  'connecting',
  'ended',
] as const;
export type TransferPhase = (typeof TRANSFER_PHASES)[number];

/** Terminal outcomes; every transfer ends in exactly one, with a free-text reason. */
export const TRANSFER_OUTCOMES = [
  'completed',
  'declined',
  'no_answer',
  'agent_b_left',
  'caller_left',
  'cancelled',
  'failed',
] as const;
export type TransferOutcome = (typeof TRANSFER_OUTCOMES)[number];

/** Who Agent B is. */
export const TARGET_KINDS = ['participant', 'sip', 'agent'] as const;
export type TargetKind = (typeof TARGET_KINDS)[number];

/** Who Agent A is: the worker's own AI (frontline) or a human the worker assists. */
export const AGENT_MODES = ['frontline', 'assist'] as const;
export type AgentMode = (typeof AGENT_MODES)[number];

export function isTerminalOutcome(value: string): value is TransferOutcome {
  return (TRANSFER_OUTCOMES as readonly string[]).includes(value);
}
