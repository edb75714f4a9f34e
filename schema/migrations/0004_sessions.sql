-- One row per runtime session (agent run), kept up to date from every event that names a session.
-- Tokens and cost come from `request` rows only (metering's `usage` rows repeat them).
CREATE TABLE IF NOT EXISTS sessions
(
    session    String,
    account    SimpleAggregateFunction(anyLast, String),
    agent      SimpleAggregateFunction(anyLast, String),
    subject    SimpleAggregateFunction(anyLast, String),
    first_ts   SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    last_ts    SimpleAggregateFunction(max, DateTime64(6, 'UTC')),
    events     SimpleAggregateFunction(sum, UInt64),
    tool_calls SimpleAggregateFunction(sum, UInt64),
    model_calls SimpleAggregateFunction(sum, UInt64),
    denied     SimpleAggregateFunction(sum, UInt64),
    tokens     SimpleAggregateFunction(sum, UInt64),
    cost       SimpleAggregateFunction(sum, Float64),
    ended      SimpleAggregateFunction(max, UInt8)
)
ENGINE = AggregatingMergeTree
ORDER BY session;

CREATE MATERIALIZED VIEW IF NOT EXISTS sessions_mv TO sessions AS
SELECT session,
       anyLast(account) AS account, anyLast(agent) AS agent, anyLast(subject) AS subject,
       min(ts) AS first_ts, max(ts) AS last_ts, count() AS events,
       countIf(kind = 'request' AND route_kind = 'mcp') AS tool_calls,
       countIf(kind = 'request' AND model != '') AS model_calls,
       countIf(action = 'deny' OR status IN (401, 403, 429)) AS denied,
       sumIf(tokens, kind = 'request') AS tokens, sumIf(cost, kind = 'request') AS cost,
       max(kind = 'session_end') AS ended
FROM events
WHERE session != ''
GROUP BY session;
