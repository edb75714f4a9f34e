"""``tools/list`` rewriting and tool change detection (tool poisoning / rug pulls).

Rewriting: tools the policy disables or denies unconditionally are removed; every
other tool gets a ``justification`` string property in its ``inputSchema`` (listed in
``required`` when the policy requires one) whose description tells the model it is
reviewed and audited.

Change detection: the first description + inputSchema seen for ``<server>/<tool>`` is
the baseline, kept in the Store under ``mcp:toolhash:<server>:<tool>``. A later
``tools/list`` showing a different hash marks the tool changed (sticky until an
operator accepts it with ``airlock mcp tools accept``), emits a ``tool_changed`` audit
event, and calls then carry ``CallContext.tool_changed=True`` for the policy.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson

JUSTIFICATION = "justification"
JUSTIFICATION_DESCRIPTION = (
    "Why this call is needed for the user's task, in one or two sentences. "
    "It is reviewed and audited by Airlock and is not passed to the tool.")
KEY_PREFIX = "mcp:toolhash:"
SEEN_MAX = 50_000        # tool hashes remembered in process; past it the memo starts again (the store is the truth)


def tool_hash(tool: dict) -> str:
    """Hash of what the model reads: description and input schema (keys sorted)."""
    payload = {"d": tool.get("description"), "s": tool.get("inputSchema")}
    try:
        blob = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    except TypeError:                                   # non-str keys cannot come from JSON; be safe
        blob = repr(payload).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def annotate(tool: dict, mode: str) -> dict:
    """Inject the ``justification`` property (in place); ``mode``: none|optional|required."""
    schema = tool.get("inputSchema")
    if not isinstance(schema, dict):
        schema = {"type": "object"}
        tool["inputSchema"] = schema
    props = schema.get("properties")
    if not isinstance(props, dict):
        props = {}
        schema["properties"] = props
    props[JUSTIFICATION] = {"type": "string", "description": JUSTIFICATION_DESCRIPTION}
    if mode == "required":
        req = schema.get("required")
        req = [r for r in req if r != JUSTIFICATION] if isinstance(req, list) else []
        req.append(JUSTIFICATION)
        schema["required"] = req
    return tool


def rewrite_tools(tools: list, server: str | None, engine: Any) -> tuple[list, list[str]]:
    """(visible annotated tools, names hidden). Entries that are not tool objects pass through."""
    kept: list = []
    hidden: list[str] = []
    for tool in tools:
        name = tool.get("name") if isinstance(tool, dict) else None
        if not isinstance(name, str):
            kept.append(tool)
            continue
        if not engine.visible(name, server):
            hidden.append(name)
            continue
        kept.append(annotate(tool, engine.justification_mode(name, server)))
    return kept, hidden


def rewrite_result(result: Any, server: str | None, engine: Any) -> tuple[Any, list[dict], list[str]]:
    """Rewrite a tools/list ``result`` in place.

    Returns (result, original tool dicts for hashing, hidden names). The originals are
    shallow snapshots taken before annotation so hashes cover what the server sent.
    """
    if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
        return result, [], []
    originals = [{"name": t.get("name"), "description": t.get("description"),
                  "inputSchema": orjson.loads(orjson.dumps(t.get("inputSchema")))}
                 for t in result["tools"] if isinstance(t, dict) and isinstance(t.get("name"), str)]
    result["tools"], hidden = rewrite_tools(result["tools"], server, engine)
    return result, originals, hidden


def _key(server: str | None, tool: str) -> str:
    return f"{KEY_PREFIX}{server or '-'}:{tool}"


class ToolWatch:
    """Remembers tool hashes per server in the Store and flags changes."""

    def __init__(self, store: Any, audit: Any):
        self.store, self.audit = store, audit
        self._seen: dict[str, str] = {}       # key -> last hash this process recorded (skips store I/O)

    async def observe(self, server: str | None, tools: list[dict]) -> list[str]:
        """Record the tools of one tools/list result; return the names that changed now."""
        changed: list[str] = []
        for tool in tools:
            name = tool["name"]
            key = _key(server, name)
            h = tool_hash(tool)
            if self._seen.get(key) == h:
                continue
            if await self._record(key, server, name, h):
                changed.append(name)
            if len(self._seen) >= SEEN_MAX:     # servers may invent tool names without end
                self._seen.clear()
            self._seen[key] = h
        return changed

    async def _record(self, key: str, server: str | None, name: str, h: str) -> bool:
        now = time.time()
        raw = await self.store.get(key)
        if raw is None:
            rec = {"server": server, "tool": name, "hash": h, "seen": h, "changed": False,
                   "first_seen": now, "changed_at": None}
            if await self.store.set(key, orjson.dumps(rec), only_if_absent=True):
                return False
            raw = await self.store.get(key)
            if raw is None:
                return False
        rec = orjson.loads(raw)
        if rec.get("seen") == h:
            return False
        if rec.get("hash") == h and not rec.get("changed"):
            return False
        old = rec.get("seen")
        rec.update(seen=h, changed=True, changed_at=now)
        await self.store.set(key, orjson.dumps(rec))
        self.audit.emit("tool_changed", server=server, tool=name, old_hash=old, new_hash=h,
                        baseline_hash=rec.get("hash"))
        return True

    async def is_changed(self, server: str | None, tool: str) -> bool:
        raw = await self.store.get(_key(server, tool))
        return bool(raw) and bool(orjson.loads(raw).get("changed"))

    async def records(self, server: str | None = None) -> list[dict]:
        prefix = KEY_PREFIX + (f"{server}:" if server else "")
        out = []
        for key in sorted(await self.store.scan(prefix)):
            raw = await self.store.get(key)
            if raw:
                out.append(orjson.loads(raw))
        return out

    async def accept(self, server: str, tool: str) -> dict | None:
        """Make the latest seen version the new baseline; None if the tool is unknown."""
        key = _key(server, tool)
        raw = await self.store.get(key)
        if raw is None:
            return None
        rec = orjson.loads(raw)
        rec.update(hash=rec.get("seen"), changed=False, accepted_at=time.time())
        await self.store.set(key, orjson.dumps(rec))
        self._seen.pop(key, None)
        self.audit.emit("tool_accepted", server=server, tool=tool, hash=rec["hash"])
        return rec
