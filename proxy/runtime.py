"""The objects one Airlock process shares between its addons, admin API and CLI.

Built once by ``proxy.server`` (or by a test) and handed to each addon's
constructor. Addons reach state only through it, never through each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .config import Config
from .store.base import Store


class AuditSink(Protocol):
    """Where audit events go. ``emit`` never blocks and never raises."""

    def emit(self, kind: str, **fields: Any) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


@dataclass
class Runtime:
    config: Config
    store: Store
    audit: AuditSink
    policy: Any = None                 # proxy.policy.PolicyHolder (its .engine is the current one)
    services: dict[str, Any] = field(default_factory=dict)   # named components (approvals, sessions, ...)
