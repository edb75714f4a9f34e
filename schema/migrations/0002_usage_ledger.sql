-- The usage ledger: one row per model call, filled from the `request` rows that carry a model.
CREATE TABLE IF NOT EXISTS usage_ledger
(
    ts         DateTime64(6, 'UTC'),
    account    LowCardinality(String),
    flow       LowCardinality(String),
    subject    String,
    agent      LowCardinality(String),
    session    String,
    token_id   String,
    provider   LowCardinality(String),
    model      LowCardinality(String),
    status     UInt64,
    outcome    LowCardinality(String),
    tokens_in  UInt64,
    tokens_out UInt64,
    tokens     UInt64,
    cost       Float64,
    stream     LowCardinality(String),
    seq        UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (account, ts, stream, seq);

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_ledger_mv TO usage_ledger AS
SELECT ts, account, flow, subject, agent, session, token_id, provider, model, status, outcome,
       tokens_in, tokens_out, tokens, cost, stream, seq
FROM events
WHERE kind = 'request' AND model != '';
