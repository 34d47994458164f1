import { z } from 'zod';
import { HandoffSchema } from './contract.js';
import { AGENT_MODES } from './transfer-state.js';

/**
 * Per-call options, carried as JSON in the dispatch metadata
 * (`AgentDispatchClient.createDispatch(room, agentName, { metadata })`).
 * Everything is optional; the worker's configuration supplies the defaults.
 */
export const JobOptionsSchema = z
  .object({
    /** frontline: the worker's AI is Agent A. assist: a human Agent A is in the room. */
    mode: z.enum(AGENT_MODES).default('frontline'),
    /** Converse over text (lk.chat / lk.transcription) instead of audio. */
    textOnly: z.boolean().optional(),
    /** Identity of the caller, when the room holds more than one non-agent participant. */
    callerIdentity: z.string().min(1).max(256).optional(),
    /** Set by the stale-transfer sweep: this job is sent to take back a call whose worker died. */
    recoverTransferId: z.string().min(1).max(128).optional(),
    /** Set when another agent hands this call over to us (an AI agent transfer target). */
    handoff: HandoffSchema.optional(),
  })
  .strict();

export type JobOptions = z.infer<typeof JobOptionsSchema>;

export type JobOptionsResult =
  | { ok: true; options: JobOptions }
  | { ok: false; options: JobOptions; error: string };

/**
 * Parse dispatch metadata. A bad payload must not cost the caller their call: the job goes on with
 * the defaults and the caller of this function logs `error`, which says what was wrong.
 */
export function parseJobOptions(metadata: string | undefined): JobOptionsResult {
  const defaults = JobOptionsSchema.parse({});
  if (!metadata || metadata.trim() === '') return { ok: true, options: defaults };
  let raw: unknown;
  try {
    raw = JSON.parse(metadata);
  } catch (err) {
    return { ok: false, options: defaults, error: `dispatch metadata is not JSON: ${(err as Error).message}` };
  }
  const parsed = JobOptionsSchema.safeParse(raw);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    return { ok: false, options: defaults, error: `dispatch metadata is not valid: ${detail}` };
  }
  return { ok: true, options: parsed.data };
}
