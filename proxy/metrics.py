"""Prometheus metrics of the proxy core. Areas define theirs next to their code,
all on the default registry, which the admin listener serves at /metrics."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from . import mitm_patches

REQUESTS = Counter("airlock_requests_total", "Requests handled, by listener, route kind and status",
                   ["listener", "route", "status"])
LATENCY = Histogram("airlock_request_duration_seconds", "Request latency from first byte in to last byte out",
                    ["listener", "route"],
                    buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300))
ERRORS = Counter("airlock_request_errors_total", "Flows that ended in an error, by listener, route and kind",
                 ["listener", "route", "kind"])
REFUSED = Counter("airlock_refused_total", "Requests Airlock answered itself, by reason", ["reason"])
PROXY_ERRORS = Counter("airlock_proxy_error_responses_total",
                       "Error responses mitmproxy wrote itself (bad request, body too large, upstream down)",
                       ["status"])
IN_FLIGHT = Gauge("airlock_connections_active", "Client connections open")
CONFIG_ERRORS = Counter("airlock_config_errors_total", "Invalid configuration rejected")

mitm_patches.ERROR_COUNTER = PROXY_ERRORS

_CHILDREN: dict[tuple, object] = {}
MAX_CHILDREN = 50_000        # label sets come from config (providers, models seen): a bound, not a limit in use


def child(metric, *labels):
    """``metric.labels(*labels)``, cached: prometheus_client's ``labels()`` takes a lock and re-validates
    the label values on every call, which costs more than the ``inc()`` on the hot path."""
    key = (id(metric), *labels)
    c = _CHILDREN.get(key)
    if c is None:
        if len(_CHILDREN) >= MAX_CHILDREN:
            _CHILDREN.clear()
        c = _CHILDREN[key] = metric.labels(*labels)
    return c
