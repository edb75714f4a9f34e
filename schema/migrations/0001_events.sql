-- Every audit event: one row per request, decision, approval step, usage record, key and policy change.
-- Rows are hash-chained per writer stream (stream, seq, prev_hash, hash): see `airlock audit verify`.
CREATE TABLE IF NOT EXISTS events
(
    ts          DateTime64(6, 'UTC'),
    kind        LowCardinality(String),
    account     LowCardinality(String),
    flow        LowCardinality(String),
    subject     String,
    agent       LowCardinality(String),
    session     String,
    token_id    String,
    listener    LowCardinality(String),
    route_kind  LowCardinality(String),
    route_name  LowCardinality(String),
    method      LowCardinality(String),
    path        String,
    outcome     LowCardinality(String),
    tool        LowCardinality(String),
    server      LowCardinality(String),
    action      LowCardinality(String),
    rule        LowCardinality(String),
    reason      String,
    provider    LowCardinality(String),
    model       LowCardinality(String),
    approval_id String,
    status      UInt64,
    bytes_in    UInt64,
    bytes_out   UInt64,
    tokens_in   UInt64,
    tokens_out  UInt64,
    tokens      UInt64,
    latency_ms  Float64,
    cost        Float64,
    data        String,
    stream      LowCardinality(String),
    seq         UInt64,
    prev_hash   String,
    hash        String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ts, stream, seq);
