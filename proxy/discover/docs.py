"""One lossless editor per config format, behind one small interface.

``Doc`` holds a file's original bytes (or None when the file does not exist yet),
a plain-Python view for reading (``data``/``get``) and path-based edits
(``set``/``delete``) that change only what they name:

* json / jsonc / json5 -> :mod:`proxy.discover.jsonedit` (span edits; comments and
  trailing commas survive);
* toml -> tomlkit (round-trips comments and layout);
* yaml -> ruamel.yaml round-trip mode (comments, key order, quoting);
* dotenv -> read only (KEY=VALUE lines).
"""
from __future__ import annotations

import os
import re
import tempfile
from io import StringIO
from pathlib import Path
from typing import Any

import tomlkit
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from .jsonedit import JsonDoc, JsonEditError

JSON_FORMATS = ("json", "jsonc", "json5")


class DocError(ValueError):
    """A config file we cannot parse; ``str()`` names the file and the problem."""


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096
    return y


def _yaml_indent(text: str, y: YAML) -> None:
    """Keep the file's list style: ``- x`` under a key indented or flush."""
    m = re.search(r"^( *)[^ #\n][^\n]*:\s*\n( *)- ", text, re.M)
    if m and len(m.group(2)) > len(m.group(1)):
        off = len(m.group(2)) - len(m.group(1))
        y.indent(mapping=2, sequence=off + 2, offset=off)
    else:
        y.indent(mapping=2, sequence=2, offset=0)


class Doc:
    def __init__(self, path: Path, fmt: str, original: bytes | None):
        self.path, self.fmt, self.original = path, fmt, original
        self.edited = False
        self._cache: Any = None
        text = "" if original is None else original.decode("utf-8")
        self._text = text
        try:
            if fmt in JSON_FORMATS:
                self._j = JsonDoc(text)
            elif fmt == "toml":
                self._t = tomlkit.parse(text)
            elif fmt == "yaml":
                self._y = _yaml()
                _yaml_indent(text, self._y)
                self._yd = self._y.load(text) if text.strip() else CommentedMap()
                if self._yd is None:
                    self._yd = CommentedMap()
            elif fmt == "dotenv":
                self._env = parse_dotenv(text)
            else:
                raise DocError(f"{path}: unknown format {fmt}")
        except (JsonEditError, tomlkit.exceptions.TOMLKitError, ValueError) as e:
            raise DocError(f"{path}: not valid {fmt.upper()}: {e}") from None
        except Exception as e:     # ruamel raises its own hierarchy
            raise DocError(f"{path}: not valid {fmt.upper()}: {e}") from None

    @classmethod
    def load(cls, path: Path, fmt: str) -> "Doc":
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raw = None
        except OSError as e:
            raise DocError(f"{path}: cannot read: {e.strerror}") from None
        try:
            return cls(path, fmt, raw)
        except UnicodeDecodeError:
            raise DocError(f"{path}: not UTF-8 text") from None

    @property
    def exists(self) -> bool:
        return self.original is not None

    # -- reading -------------------------------------------------------------------------
    @property
    def data(self) -> Any:
        """A plain-Python view (cached until the next edit; do not mutate)."""
        if self.fmt in JSON_FORMATS:
            return self._j.data
        if self._cache is None:
            self._cache = (self._t.unwrap() if self.fmt == "toml" else _plain(self._yd) if self.fmt == "yaml"
                           else dict(self._env))
        return self._cache

    @property
    def raw(self) -> Any:
        """The live tomlkit/ruamel document, for format-specific edits."""
        return self._t if self.fmt == "toml" else self._yd if self.fmt == "yaml" else None

    def get(self, path: list, default: Any = None) -> Any:
        cur = self.data
        for k in path:
            if isinstance(cur, dict) and k in cur:
                cur = cur[k]
            elif isinstance(cur, list) and isinstance(k, int) and -len(cur) <= k < len(cur):
                cur = cur[k]
            else:
                return default
        return cur

    # -- editing -------------------------------------------------------------------------
    def set(self, path: list, value: Any, table: bool = False) -> bool:
        """Set ``path`` to ``value`` (creating parents). ``table``: TOML ``[section]`` not inline."""
        if self.get(path, _MISSING) == value:
            return False
        self.edited = True
        self._cache = None
        if self.fmt in JSON_FORMATS:
            return self._j.set(path, value)
        if self.fmt == "toml":
            cur = self._t
            for k in path[:-1]:
                if k not in cur:
                    cur[k] = tomlkit.table(is_super_table=True)
                cur = cur[k]
            if isinstance(value, dict) and not table:
                it = tomlkit.inline_table()
                it.update(value)
                value = it
            elif isinstance(value, dict):
                tb = tomlkit.table()
                for k, v in value.items():
                    tb[k] = v
                value = tb
            cur[path[-1]] = value
            return True
        if self.fmt == "yaml":
            cur = self._yd
            for k in path[:-1]:
                if not isinstance(cur.get(k), dict):
                    cur[k] = CommentedMap()
                cur = cur[k]
            new = _to_yaml(value)
            old_v = cur.get(path[-1]) if isinstance(cur, dict) else None
            if hasattr(old_v, "fa") and hasattr(new, "fa") and old_v.fa.flow_style():
                new.fa.set_flow_style()
            cur[path[-1]] = new
            return True
        raise DocError(f"{self.path}: {self.fmt} files are read-only here")

    def append_table(self, path: list, value: dict) -> None:
        """TOML: add ``[a.b]`` at the end of the file (valid out of order), nested dicts inline."""
        self.edited = True
        self._cache = None
        fresh = tomlkit.document()
        cur = fresh
        for k in path[:-1]:
            cur[k] = tomlkit.table(is_super_table=True)
            cur = cur[k]
        tb = tomlkit.table()
        for k, v in value.items():
            if isinstance(v, dict):
                it = tomlkit.inline_table()
                it.update(v)
                v = it
            tb[k] = v
        cur[path[-1]] = tb
        self._t = tomlkit.parse(tomlkit.dumps(self._t).rstrip("\n") + "\n\n" + tomlkit.dumps(fresh))

    def delete(self, path: list) -> bool:
        if self.get(path, _MISSING) is _MISSING:
            return False
        self.edited = True
        self._cache = None
        if self.fmt in JSON_FORMATS:
            return self._j.delete(path)
        cur: Any = self._t if self.fmt == "toml" else self._yd
        for k in path[:-1]:
            cur = cur[k]
        del cur[path[-1]]
        return True

    def render(self) -> bytes:
        if self.fmt in JSON_FORMATS:
            return self._j.text.encode("utf-8")
        if self.fmt == "toml":
            return tomlkit.dumps(self._t).encode("utf-8")
        if self.fmt == "yaml":
            buf = StringIO()
            self._y.dump(self._yd, buf)
            return buf.getvalue().encode("utf-8")
        return self.original or b""

    @property
    def changed(self) -> bool:
        """True when an edit made the bytes differ (a new file counts once something was set)."""
        return self.edited and (self.original is None or self.render() != self.original)


_MISSING = object()


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, str):
        return str(v)
    return v


def _to_yaml(v: Any) -> Any:
    if isinstance(v, dict):
        m = CommentedMap()
        for k, x in v.items():
            m[k] = _to_yaml(x)
        return m
    if isinstance(v, list):
        return CommentedSeq([_to_yaml(x) for x in v])
    return v


_DOTENV = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def parse_dotenv(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        m = _DOTENV.match(line)
        if m:
            v = m.group(2)
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
                v = v[1:-1]
            out[m.group(1)] = v
    return out


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` (through a symlink, to its target) with ``data``, keeping its mode."""
    target = path.resolve() if path.is_symlink() else path
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = target.stat().st_mode & 0o7777 if target.exists() else 0o600
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".airlock-tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
