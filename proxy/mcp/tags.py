"""JSON-RPC ids that carry what Airlock must do with the answer.

On the legacy HTTP+SSE transport the answer to a POST arrives on a GET stream that another
Airlock worker may carry. Instead of shared state, the POST side rewrites the request id:

* a refused call becomes ``ping`` with id ``airlock:r:<base64url(refusal response)>``; the
  ping's answer is replaced by the refusal (which holds the original id);
* a ``tools/list`` gets id ``airlock:l:<base64url(original id)>``; its result is filtered
  and annotated and the original id restored.

Anyone who can send these ids only affects answers addressed to itself, and an upstream
can already send any answer on its own stream, so the tags need no signature.
"""
from __future__ import annotations

import base64
from typing import Any

import orjson

PREFIX = "airlock:"
_REFUSAL = "airlock:r:"
_LIST = "airlock:l:"


def _enc(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def _dec(text: str) -> Any:
    return orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def refusal_tag(response: dict) -> str:
    return _REFUSAL + _enc(response)


def list_tag(rpc_id: Any) -> str:
    return _LIST + _enc(rpc_id)


def untag(rpc_id: str) -> tuple[str | None, Any]:
    """("replace", response) | ("list", original id) | (None, None) for anything else."""
    try:
        if rpc_id.startswith(_REFUSAL):
            value = _dec(rpc_id[len(_REFUSAL):])
            if isinstance(value, dict) and value.get("jsonrpc") == "2.0":
                return "replace", value
        elif rpc_id.startswith(_LIST):
            value = _dec(rpc_id[len(_LIST):])
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                return "list", value
    except (ValueError, orjson.JSONDecodeError):
        pass
    return None, None
