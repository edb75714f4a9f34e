"""The ClickHouse client of the audit trail (chDB in process, or a server over http(s)).

Only the ingester process (``proxy.audit.ingester``) and ``airlock db`` connect; the proxy never does.
"""
from __future__ import annotations

from typing import Any

# chDB's server settings (ClickHouse's defaults are sized for a server with the machine to itself): one merge
# at a time (concurrent merges of the audit tables took ~70 MB at once, and the RSS stayed up seconds after);
# caches that queries fill (marks, query conditions, compiled expressions) capped well under their GB defaults
# so a long-running ingester answering dashboards stays bounded.
CHDB_OPTIONS = {"background_pool_size": 1, "background_merges_mutations_concurrency_ratio": 1,
                "mark_cache_size": 64 << 20, "index_mark_cache_size": 16 << 20,
                "primary_index_cache_size": 16 << 20, "query_condition_cache_size": 16 << 20,
                "compiled_expression_cache_size": 16 << 20}


def connect(dsn: str) -> Any:
    import clickhouse_connect
    if dsn.startswith("chdb://"):
        return clickhouse_connect.get_client(dsn=dsn, chdb_options=CHDB_OPTIONS)
    return clickhouse_connect.get_client(dsn=dsn, connect_timeout=3, send_receive_timeout=30,
                                         query_retries=0, autogenerate_session_id=False)


def redacted_dsn(dsn: str) -> str:
    """The DSN without its password, for logs."""
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return dsn
