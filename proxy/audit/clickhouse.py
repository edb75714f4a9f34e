"""The ClickHouse client of the audit trail (chDB in process, or a server over http(s)).

Only the ingester process (``proxy.audit.ingester``) and ``airlock db`` connect; the proxy never does.
"""
from __future__ import annotations

from typing import Any


def connect(dsn: str) -> Any:
    import clickhouse_connect
    if dsn.startswith("chdb://"):
        return clickhouse_connect.get_client(dsn=dsn)
    return clickhouse_connect.get_client(dsn=dsn, connect_timeout=3, send_receive_timeout=30,
                                         query_retries=0, autogenerate_session_id=False)


def redacted_dsn(dsn: str) -> str:
    """The DSN without its password, for logs."""
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return dsn
