"""``airlock mcp wrap``: a stdio MCP server as a child, its traffic under the same policy.

The agent starts ``airlock mcp wrap --server NAME -- COMMAND ARGS...`` instead of the server.
Newline-delimited JSON-RPC from the agent (stdin) is parsed like an HTTP body: each
``tools/call`` is decided, refused calls are answered here with an ``isError`` result (the
child never sees them), ``justification`` is stripped from the arguments of every call that
goes on; ``tools/list`` results coming back from the child are filtered and annotated and
their hashes recorded. Decisions come from the running Airlock (admin API ``/v1/check``,
which also writes the audit rows) or, when none answers, from the engine in process with
the config's policies, store and audit sink: the same rows either way.
"""
from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import orjson

from . import decide, jsonrpc, replies
from .tools import JUSTIFICATION, ToolWatch

log = logging.getLogger("airlock.mcp.wrap")
LINE_LIMIT = 64 * 1024 * 1024


class RemoteDecider:
    """Asks a running Airlock through its admin API."""

    kind = "admin API"

    def __init__(self, base_url: str, token: str | None):
        import httpx
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=30,
                                      headers={"authorization": f"Bearer {token}"} if token else {})

    async def check(self, body: dict) -> dict:
        r = await self.http.post("/v1/check", json=body)
        if r.status_code != 200:
            raise RuntimeError(f"/v1/check answered HTTP {r.status_code}: {r.text[:200]}")
        return r.json()

    async def tools_list(self, server: str, result: dict) -> dict:
        r = await self.http.post("/v1/mcp/tools/list", json={"server": server, "result": result})
        if r.status_code != 200:
            raise RuntimeError(f"/v1/mcp/tools/list answered HTTP {r.status_code}: {r.text[:200]}")
        return r.json()

    async def close(self) -> None:
        await self.http.aclose()


class LocalDecider:
    """The policy engine in this process (no Airlock running): config policies, store, audit."""

    kind = "engine in process"

    def __init__(self, rt: Any):
        self.rt = rt
        self.watch = ToolWatch(rt.store, rt.audit)

    @classmethod
    async def open(cls, cfg: Any) -> "LocalDecider":
        from proxy.policy import PolicyHolder
        from proxy.runtime import Runtime
        from proxy.store import open_store
        data = cfg.path(cfg.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        store = open_store(cfg.redis, persist_path=data / "store.json")
        try:
            from proxy.audit import open_audit
            audit = open_audit(cfg)
        except ImportError:                                  # pragma: no cover
            from proxy.server import NullAudit
            audit = NullAudit()
        rt = Runtime(config=cfg, store=store, audit=audit,
                     policy=PolicyHolder([str(cfg.path(p)) for p in cfg.policies], on_event=audit.emit))
        await store.start()
        await audit.start()
        return cls(rt)

    async def check(self, body: dict) -> dict:
        status, out = await decide.check(self.rt, self.watch, body)
        if status != 200:
            raise RuntimeError(out["error"]["message"])
        return out

    async def tools_list(self, server: str, result: dict) -> dict:
        status, out = await decide.tools_list(self.rt, self.watch, {"server": server, "result": result})
        if status != 200:
            raise RuntimeError(out["error"]["message"])
        return out

    async def close(self) -> None:
        await self.rt.audit.close()
        await self.rt.store.close()


class Wrapper:
    """Pumps stdin -> child and child -> stdout, deciding on the way."""

    def __init__(self, decider: Any, server: str, identity: dict[str, str | None]):
        self.decider, self.server, self.identity = decider, server, identity
        self.list_ids: set = set()
        self.out_lock = asyncio.Lock()
        self.out: Any = None
        self.refused = 0

    async def write_out(self, obj: Any) -> None:
        async with self.out_lock:
            self.out.write(orjson.dumps(obj) + b"\n")
            self.out.flush()

    async def run(self, argv: list[str]) -> int:
        self.out = sys.stdout.buffer
        child = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                     stdout=asyncio.subprocess.PIPE, limit=LINE_LIMIT)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=LINE_LIMIT)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        up = asyncio.create_task(self.pump_in(reader, child))
        down = asyncio.create_task(self.pump_out(child))
        code = await child.wait()
        await down
        up.cancel()
        return code

    async def pump_in(self, reader: asyncio.StreamReader, child) -> None:
        try:
            while line := await reader.readline():
                if not line.strip():
                    continue
                forward = await self.from_client(line)
                if forward is not None and child.stdin is not None:
                    child.stdin.write(forward)
                    await child.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            return
        if child.stdin is not None:
            child.stdin.close()

    async def pump_out(self, child) -> None:
        assert child.stdout is not None
        while line := await child.stdout.readline():
            new = await self.from_server(line)
            async with self.out_lock:
                self.out.write(new if new.endswith(b"\n") else new + b"\n")
                self.out.flush()

    async def from_client(self, line: bytes) -> bytes | None:
        """The bytes to send to the child for one line from the agent (None: answered here)."""
        parsed = jsonrpc.parse(line)
        if parsed.error:
            rid = parsed.messages[0].id if parsed.messages else None
            await self.write_out(jsonrpc.error(rid, *parsed.error))
            return None
        keep: list = []
        answers: list = []
        dirty = False
        for msg in parsed.messages:
            if msg.kind == "invalid":
                answers.append(jsonrpc.error(msg.id, *msg.error))
                dirty = True
                continue
            if msg.kind == "request" and msg.method == "tools/list":
                self.list_ids.add(msg.id)
            elif msg.is_call:
                answer, stripped = await self.decide_call(msg)
                dirty |= stripped
                if answer is not None:
                    answers.append(answer)
                    dirty = True
                    continue
            keep.append(msg.raw)
        for a in answers:
            await self.write_out(a)
        if not keep:
            return None
        if not dirty:
            return line if line.endswith(b"\n") else line + b"\n"
        return orjson.dumps(keep if parsed.batch else keep[0]) + b"\n"

    async def decide_call(self, msg: jsonrpc.Message) -> tuple[dict | None, bool]:
        name, args = jsonrpc.call_params(msg)
        if name is None:
            return jsonrpc.error(msg.id, jsonrpc.INVALID_PARAMS, f"Invalid params: {args}"), False
        stripped = JUSTIFICATION in args
        justification = decide.text_of(args.pop(JUSTIFICATION, None))
        body = {"tool": name, "args": args, "server": self.server, "justification": justification,
                "source": "wrap", **self.identity}
        try:
            answer = await self.decider.check(body)
        except Exception as e:                                # fail closed
            log.error("airlock mcp wrap: no decision for %s (%s); refusing", name, e)
            self.refused += 1
            return replies.tool_result(msg.id, f"Airlock could not check this call to '{name}' ({e}), so it "
                                               "was not run (fail closed). Retry later or ask the user.",
                                       modern=jsonrpc.is_modern(msg)), stripped
        if answer.get("decision") == "allow" and not answer.get("refusal"):
            return None, stripped
        self.refused += 1
        return replies.tool_result(msg.id, answer.get("refusal") or answer.get("reason") or "refused",
                                   modern=jsonrpc.is_modern(msg)), stripped

    async def from_server(self, line: bytes) -> bytes:
        if not self.list_ids:
            return line
        if b'"tools"' not in line:
            if b'"error"' in line:                            # a tools/list that failed: forget its id
                value, err = jsonrpc.loads(line)
                if not err and isinstance(value, dict) and "method" not in value and _plain(value.get("id")):
                    self.list_ids.discard(value["id"])
            return line
        value, err = jsonrpc.loads(line)
        if err or not isinstance(value, dict) or "method" in value or not _plain(value.get("id")) \
                or value["id"] not in self.list_ids:
            return line
        self.list_ids.discard(value["id"])
        if not isinstance(value.get("result"), dict):
            return line
        try:
            value["result"] = (await self.decider.tools_list(self.server, value["result"]))["result"]
        except Exception as e:                                # fail closed: no unfiltered list
            log.error("airlock mcp wrap: tools/list could not be filtered (%s)", e)
            return orjson.dumps(jsonrpc.error(value["id"], jsonrpc.INTERNAL_ERROR,
                                              f"Airlock could not filter tools/list ({e})")) + b"\n"
        return orjson.dumps(value) + b"\n"


def _plain(rid: Any) -> bool:
    """A JSON-RPC id that can be looked up (a server may send an object or array as id)."""
    return isinstance(rid, (str, int, float)) or rid is None


async def wrap(argv: list[str], server: str, identity: dict[str, str | None], decider: Any) -> int:
    try:
        return await Wrapper(decider, server, identity).run(argv)
    finally:
        await decider.close()
