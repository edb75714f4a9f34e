"""An approval request, its states and votes, and how it is kept in a store hash.

One request lives in the hash ``approvals:r:<id>``. Static facts (tool, arguments,
who asked, workflow) sit in one JSON field ``doc``; everything that changes
(``state``, one ``v:<approver>`` field per vote, ``approvals`` count, decision
fields) is its own field so the vote script can update it atomically. The
helper fields ``req:<name>`` (the requester's names: they may not approve their
own call), ``ok:<name>`` (allowed approvers) and ``open`` (anyone may approve)
exist only for that script.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..policy.secrets import redact as redact_values

PENDING = "pending"
APPROVED = "approved"
DENIED = "denied"
EXPIRED = "expired"
CANCELLED = "cancelled"
STATES = (PENDING, APPROVED, DENIED, EXPIRED, CANCELLED)
FINAL = frozenset({APPROVED, DENIED, EXPIRED, CANCELLED})

APPROVE = "approve"
DENY = "deny"

KEY_PREFIX = "approvals:r:"
REDACTED = "[redacted]"

_SECRET_KEY = re.compile(r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|apikey|authori[sz]ation|"
                         r"credential|cookie|private[_-]?key|access[_-]?key|session[_-]?key|bearer)", re.I)



def compact_json(value: Any) -> bytes:
    """orjson output as an exact-size bytes object: ``orjson.dumps`` keeps a ~4 KB buffer per
    result, which adds up to tens of MB for values kept in memory (10,000 held requests)."""
    return bytes(memoryview(orjson.dumps(value)))


def new_id() -> str:
    return "apr_" + secrets.token_hex(6)


def norm_name(name: str | None) -> str:
    """Approver / requester names compare case-insensitively, without surrounding spaces."""
    return (name or "").strip().lower()


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of tool arguments safe to show to approvers and to store: values under secret-looking
    keys and secret-looking strings anywhere are replaced."""
    if _depth > 32:
        return REDACTED
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) and v not in (None, "", [], {})
                    else redact(v, _depth + 1)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, _depth + 1) for v in value]
    if isinstance(value, str):
        return redact_values(value)         # the shared secret detector (API keys, tokens, JWTs, ...)
    return value


def fingerprint(tool: str, server: str | None, args: Any, account: str | None,
                subject: str | None, agent: str | None) -> str:
    """Identity of "the same call by the same caller" (async approvals let it through once)."""
    raw = orjson.dumps([account, subject, agent, server, tool, args], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest()[:32]


@dataclass(slots=True)
class Vote:
    approver: str
    decision: str           # approve | deny
    comment: str = ""
    time: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"approver": self.approver, "decision": self.decision, "comment": self.comment,
                "time": self.time}


@dataclass(slots=True)
class ApprovalRequest:
    id: str
    tool: str
    server: str | None
    workflow: str
    created_at: float
    expires_at: float
    arguments: dict = field(default_factory=dict)      # redacted
    agent: str | None = None
    subject: str | None = None
    account: str | None = None
    flow: str | None = None
    session: str | None = None
    justification: str | None = None
    rule: str | None = None
    reason: str | None = None                           # why the policy asked for approval
    required_approvals: int = 1
    approvers: list[str] = field(default_factory=list)  # empty = any admin
    channels: list[str] = field(default_factory=list)
    async_approval: bool = False
    on_timeout: str = "deny"
    fingerprint: str | None = None
    state: str = PENDING
    votes: list[Vote] = field(default_factory=list)
    decided_at: float | None = None
    decided_by: str | None = None
    decision_reason: str | None = None
    outcome: str | None = None

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.id

    @property
    def requester(self) -> str | None:
        return self.subject or self.agent

    @property
    def final(self) -> bool:
        return self.state in FINAL

    def seconds_left(self, now: float | None = None) -> float:
        return max(0.0, self.expires_at - (now if now is not None else time.time()))

    # -- JSON contract (admin API, CLI --json, webhook payloads) ------------------------------
    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "state": self.state, "tool": self.tool, "server": self.server,
            "arguments": self.arguments, "agent": self.agent, "subject": self.subject,
            "account": self.account, "flow": self.flow, "session": self.session,
            "justification": self.justification, "rule": self.rule, "reason": self.reason,
            "workflow": self.workflow, "required_approvals": self.required_approvals,
            "approvers": self.approvers, "channels": self.channels, "async_approval": self.async_approval,
            "on_timeout": self.on_timeout, "created_at": self.created_at, "expires_at": self.expires_at,
            "votes": [v.as_dict() for v in self.votes], "decided_at": self.decided_at,
            "decided_by": self.decided_by, "decision_reason": self.decision_reason, "outcome": self.outcome,
        }

    # -- store hash ----------------------------------------------------------------------------
    _DOC = ("id", "tool", "server", "workflow", "created_at", "arguments", "agent", "subject", "account",
            "flow", "session", "justification", "rule", "reason", "approvers", "channels",
            "async_approval", "on_timeout", "fingerprint")

    # optional doc keys left out at their default (``from_fields`` restores it): the in-process store
    # keeps every pending request in memory, 10,000 at once
    _DOC_DEFAULTS = {"arguments": {}, "agent": None, "subject": None, "account": None, "flow": None,
                     "session": None, "justification": None, "rule": None, "reason": None, "approvers": [],
                     "channels": [], "async_approval": False, "on_timeout": "deny", "fingerprint": None}

    def to_fields(self) -> dict[str, bytes]:
        omit = self._DOC_DEFAULTS
        doc = {k: v for k in self._DOC if (v := getattr(self, k)) != omit.get(k, _KEEP)}
        # ``required`` 1 and ``approvals`` 0 are the defaults of the vote script and ``from_fields`` too
        fields = {"doc": compact_json(doc), "state": self.state.encode(),
                  "expires_at": repr(float(self.expires_at)).encode()}
        if int(self.required_approvals) != 1:
            fields["required"] = str(int(self.required_approvals)).encode()
        for name in {norm_name(self.subject), norm_name(self.agent)} - {""}:
            fields["req:" + name] = b"1"
        if self.approvers:
            for name in self.approvers:
                fields["ok:" + norm_name(name)] = b"1"
        else:
            fields["open"] = b"1"
        return fields

    @classmethod
    def from_fields(cls, fields: dict[str, bytes]) -> "ApprovalRequest | None":
        raw = fields.get("doc")
        if not raw:
            return None
        doc = orjson.loads(raw)
        req = cls(**{k: doc.get(k) for k in cls._DOC if k in doc},
                  expires_at=float(fields.get("expires_at", b"0")),
                  required_approvals=int(fields.get("required", b"1")))
        req.arguments = req.arguments or {}
        req.approvers = list(req.approvers or [])
        req.channels = list(req.channels or [])
        req.state = _text(fields.get("state")) or PENDING
        if "decided_at" in fields:
            req.decided_at = float(fields["decided_at"])
        req.decided_by = _text(fields.get("decided_by"))
        req.decision_reason = _text(fields.get("decision_reason"))
        req.outcome = _text(fields.get("outcome"))
        votes = []
        for name, value in fields.items():
            if name.startswith("v:"):
                v = orjson.loads(value)
                votes.append(Vote(v.get("approver", name[2:]), v.get("decision", ""), v.get("comment", ""),
                                  float(v.get("time", 0.0))))
        req.votes = sorted(votes, key=lambda v: v.time)
        # escalation may widen the approver list after creation
        extra = sorted(n[3:] for n in fields if n.startswith("ok:"))
        known = {norm_name(a) for a in req.approvers}
        req.approvers += [n for n in extra if n not in known]
        return req


_KEEP = object()


def _text(value: bytes | None) -> str | None:
    return value.decode() if value else None
