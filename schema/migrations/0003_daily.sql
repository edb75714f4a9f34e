-- Calls and spend per day per account / agent / model / tool / kind. Query with sum() and GROUP BY:
-- SummingMergeTree merges rows in the background, so unmerged parts may still hold several rows per key.
CREATE TABLE IF NOT EXISTS daily_stats
(
    day        Date,
    account    LowCardinality(String),
    agent      LowCardinality(String),
    model      LowCardinality(String),
    tool       LowCardinality(String),
    kind       LowCardinality(String),
    calls      UInt64,
    errors     UInt64,
    denied     UInt64,
    tokens_in  UInt64,
    tokens_out UInt64,
    cost       Float64,
    latency_ms Float64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, account, agent, model, tool, kind);

CREATE MATERIALIZED VIEW IF NOT EXISTS daily_stats_mv TO daily_stats AS
SELECT toDate(ts) AS day, account, agent, model, tool, kind,
       count() AS calls,
       countIf(status >= 500 OR kind = 'error') AS errors,
       countIf(action = 'deny' OR status IN (401, 403, 429)) AS denied,
       sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out, sum(cost) AS cost,
       sum(latency_ms) AS latency_ms
FROM events
WHERE kind IN ('request', 'decision', 'error')
GROUP BY day, account, agent, model, tool, kind;
