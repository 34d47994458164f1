-- Transfer records: one row per transfer, one row per phase change.
-- Times are integer milliseconds since the Unix epoch.

CREATE TABLE transfers (
  id               TEXT PRIMARY KEY,
  caller_room      TEXT NOT NULL,
  consult_room     TEXT,
  caller_identity  TEXT,
  agent_a_identity TEXT,
  mode             TEXT NOT NULL,            -- frontline | assist
  initiated_by     TEXT,
  target_kind      TEXT NOT NULL,            -- participant | sip | agent
  target_json      TEXT,                     -- what was asked for: skill, identity, phone, agent name
  request_reason   TEXT,                     -- why the transfer was requested
  agent_b_identity TEXT,
  agent_b_kind     TEXT,
  phase            TEXT NOT NULL,            -- current phase
  outcome          TEXT,                     -- NULL while open
  reason           TEXT,                     -- the outcome's reason
  summary_json     TEXT,
  brief            TEXT,
  summary_source   TEXT,                     -- llm | rolling | fallback
  summary_model    TEXT,
  requested_at     INTEGER NOT NULL,
  summarizing_at   INTEGER,
  offering_at      INTEGER,
  briefing_at      INTEGER,
  connecting_at    INTEGER,
  ended_at         INTEGER,
  worker_id        TEXT,
  job_id           TEXT,
  owner_worker_id  TEXT,                     -- the worker responsible for finishing it
  heartbeat_at     INTEGER,                  -- the owner's last sign of life
  created_at       INTEGER NOT NULL,
  updated_at       INTEGER NOT NULL
);

-- History queries list newest first and page with a (requested_at, id) cursor.
CREATE INDEX transfers_by_requested ON transfers (requested_at DESC, id DESC);
CREATE INDEX transfers_by_outcome   ON transfers (outcome, requested_at DESC, id DESC);
CREATE INDEX transfers_by_room      ON transfers (caller_room, requested_at DESC, id DESC);
CREATE INDEX transfers_by_agent_a   ON transfers (agent_a_identity, requested_at DESC, id DESC);
CREATE INDEX transfers_by_agent_b   ON transfers (agent_b_identity, requested_at DESC, id DESC);
-- Crash-recovery sweeps look for open transfers whose owner went quiet.
CREATE INDEX transfers_open_by_heartbeat ON transfers (heartbeat_at) WHERE outcome IS NULL;

CREATE TABLE transfer_events (
  id          INTEGER PRIMARY KEY,
  transfer_id TEXT NOT NULL REFERENCES transfers (id) ON DELETE CASCADE,
  seq         INTEGER NOT NULL,              -- 1, 2, ... per transfer, in the order written
  phase       TEXT NOT NULL,
  at          INTEGER NOT NULL,
  detail_json TEXT,
  op_key      TEXT UNIQUE,                   -- the writer's operation key: retries never duplicate
  UNIQUE (transfer_id, seq)
);
