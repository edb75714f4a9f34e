"""A lossless editor for JSON, JSONC and JSON5 text.

The parser keeps the character span of every value and object member, so an edit
replaces, inserts or removes only the bytes it is about; comments, trailing commas,
key order, quoting and indentation everywhere else stay exactly as they were.
After each edit the text is parsed again (agent configs are small), which keeps
the spans honest.

Reading is lenient (a superset: ``//`` and ``/* */`` comments, trailing commas,
JSON5 unquoted keys, single-quoted strings, hex/Infinity/NaN numbers); new values
are written as plain JSON, which every flavour accepts.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import json5


class JsonEditError(ValueError):
    """Unparseable input or an impossible edit; ``str()`` names the line."""


@dataclass(slots=True)
class Node:
    kind: str                     # "obj" | "arr" | "scalar"
    start: int
    end: int                      # exclusive
    value: Any = None             # decoded value for scalars
    members: list["Member"] = field(default_factory=list)   # objects
    items: list["Node"] = field(default_factory=list)       # arrays

    def get(self, key: str) -> "Member | None":
        for m in reversed(self.members):   # the last duplicate wins, as in JSON.parse
            if m.key == key:
                return m
        return None

    def plain(self) -> Any:
        if self.kind == "obj":
            return {m.key: m.value.plain() for m in self.members}
        if self.kind == "arr":
            return [i.plain() for i in self.items]
        return self.value


@dataclass(slots=True)
class Member:
    key: str
    key_start: int
    value: Node


_SKIP = re.compile(r"(?:[ \t\r\n\ufeff\u00a0\u2028\u2029]+|//[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)
_DQ = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_SQ = re.compile(r"'(?:[^'\\]|\\.)*'", re.S)
_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_TOKEN = re.compile(r"[A-Za-z0-9_+\-.$]+")


class _Parser:
    def __init__(self, text: str):
        self.t = text
        self.i = 0

    def fail(self, what: str) -> JsonEditError:
        line = self.t.count("\n", 0, self.i) + 1
        return JsonEditError(f"line {line}: {what}")

    def ws(self) -> None:
        """Skip whitespace and comments (one regex; an unterminated /* is an error)."""
        self.i = _SKIP.match(self.t, self.i).end()
        if self.t.startswith("/*", self.i):
            raise self.fail("unterminated /* comment")

    def string(self) -> tuple[str, int, int]:
        t, q, start = self.t, self.t[self.i], self.i
        m = (_DQ if q == '"' else _SQ).match(t, start)
        if not m:
            raise self.fail("unterminated string")
        j = m.end() - 1
        raw = m.group(0)
        self.i = j + 1
        if q == '"' and "\\" not in raw:
            return raw[1:-1], start, j + 1
        try:
            val = json.loads(raw) if q == '"' else json5.loads(raw)
        except ValueError:
            try:
                val = json5.loads(raw)
            except ValueError:
                raise self.fail(f"bad string {raw[:40]!r}") from None
        return val, start, j + 1

    def value(self) -> Node:
        self.ws()
        if self.i >= len(self.t):
            raise self.fail("unexpected end of input")
        c = self.t[self.i]
        if c == "{":
            return self.obj()
        if c == "[":
            return self.arr()
        if c in "\"'":
            v, s, e = self.string()
            return Node("scalar", s, e, v)
        m = _TOKEN.match(self.t, self.i)
        if not m:
            raise self.fail(f"unexpected character {c!r}")
        raw = m.group(0)
        try:
            v = json.loads(raw)
        except ValueError:
            try:
                v = json5.loads(raw)
            except ValueError:
                raise self.fail(f"bad value {raw!r}") from None
        self.i = m.end()
        return Node("scalar", m.start(), m.end(), v)

    def obj(self) -> Node:
        node = Node("obj", self.i, -1)
        self.i += 1
        while True:
            self.ws()
            if self.i >= len(self.t):
                raise self.fail("unterminated object")
            c = self.t[self.i]
            if c == "}":
                self.i += 1
                node.end = self.i
                return node
            if c in "\"'":
                key, ks, _ = self.string()
            else:
                m = _IDENT.match(self.t, self.i)
                if not m:
                    raise self.fail(f"expected a key, found {c!r}")
                key, ks = m.group(0), m.start()
                self.i = m.end()
            self.ws()
            if self.t[self.i:self.i + 1] != ":":
                raise self.fail(f"expected ':' after key {key!r}")
            self.i += 1
            node.members.append(Member(key, ks, self.value()))
            self.ws()
            if self.t[self.i:self.i + 1] == ",":
                self.i += 1
            elif self.t[self.i:self.i + 1] != "}":
                raise self.fail("expected ',' or '}'")

    def arr(self) -> Node:
        node = Node("arr", self.i, -1)
        self.i += 1
        while True:
            self.ws()
            if self.t[self.i:self.i + 1] == "]":
                self.i += 1
                node.end = self.i
                return node
            node.items.append(self.value())
            self.ws()
            if self.t[self.i:self.i + 1] == ",":
                self.i += 1
            elif self.t[self.i:self.i + 1] != "]":
                raise self.fail("expected ',' or ']'")


def parse(text: str) -> Node:
    p = _Parser(text)
    try:
        root = p.value()
    except RecursionError:
        raise JsonEditError("nesting too deep") from None
    p.ws()
    if p.i != len(text):
        raise p.fail("unexpected text after the document")
    return root


class JsonDoc:
    """Edit a JSON/JSONC/JSON5 document in place; ``text`` is always the current bytes."""

    def __init__(self, text: str):
        self.text = text if text.strip() else "{}\n"
        self.nl = "\r\n" if "\r\n" in self.text else "\n"     # keep the file's line endings
        self._data: Any = None
        self.root = parse(self.text)
        self.unit = self._detect_unit()

    @property
    def data(self) -> Any:
        if self._data is None:
            self._data = self.root.plain()
        return self._data

    # -- layout helpers ------------------------------------------------------------------
    def _detect_unit(self) -> str:
        m = re.search(r"\n([ \t]+)[\"'A-Za-z_$\[{]", self.text)
        return m.group(1) if m else "  "

    def _line_indent(self, pos: int) -> str:
        ls = self.text.rfind("\n", 0, pos) + 1
        m = re.match(r"[ \t]*", self.text[ls:])
        return m.group(0) if m else ""

    def _dump(self, value: Any, indent: str, inline: bool) -> str:
        if inline:
            return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
        unit = len(self.unit.expandtabs(4)) if "\t" not in self.unit else "\t"
        s = json.dumps(value, ensure_ascii=False, indent=unit)
        return s.replace("\n", "\n" + indent)

    def _splice(self, start: int, end: int, new: str) -> None:
        if self.nl != "\n":
            new = new.replace("\n", self.nl)
        self.text = self.text[:start] + new + self.text[end:]
        self.root = parse(self.text)
        self._data = None

    def _node(self, path: list[str | int]) -> Node | None:
        node = self.root
        for k in path:
            if node.kind == "obj" and isinstance(k, str):
                m = node.get(k)
                if m is None:
                    return None
                node = m.value
            elif node.kind == "arr" and isinstance(k, int) and -len(node.items) <= k < len(node.items):
                node = node.items[k]
            else:
                return None
        return node

    def get(self, path: list[str | int], default: Any = None) -> Any:
        n = self._node(path)
        return default if n is None else n.plain()

    # -- edits ---------------------------------------------------------------------------
    def set(self, path: list[str | int], value: Any) -> bool:
        """Set ``path`` to ``value``, creating missing objects. Returns True if the text changed."""
        if not path:
            raise JsonEditError("cannot replace the whole document")
        old = self._node(path)
        if old is not None:
            if old.plain() == value and type(old.plain()) is type(value):
                return False
            if not isinstance(value, (dict, list)):
                inline = True
            elif old.kind != "scalar":
                inline = "\n" not in self.text[old.start:old.end]
            else:
                inline = self._parent_inline(path)
            self._splice(old.start, old.end, self._dump(value, self._line_indent(old.start), inline))
            return True
        # find the deepest existing object on the path, then insert the rest as one value
        for depth in range(len(path) - 1, -1, -1):
            parent = self._node(path[:depth])
            if parent is not None:
                break
        if parent.kind != "obj" or not isinstance(path[depth], str):
            raise JsonEditError(f"cannot create {'.'.join(map(str, path))}: parent is not an object")
        value_to_add: Any = value
        for k in reversed(path[depth + 1:]):
            if not isinstance(k, str):
                raise JsonEditError("cannot create array items by path")
            value_to_add = {k: value_to_add}
        self._insert_member(parent, path[depth], value_to_add)
        return True

    def _parent_inline(self, path: list[str | int]) -> bool:
        parent = self._node(path[:-1])
        return parent is not None and "\n" not in self.text[parent.start:parent.end]

    def _insert_member(self, obj: Node, key: str, value: Any) -> None:
        t = self.text
        key_s = json.dumps(key, ensure_ascii=False)
        if not obj.members:
            inner = t[obj.start + 1:obj.end - 1]
            if inner.strip():          # only comments inside: keep them, add after
                ind = self._line_indent(obj.start) + self.unit
                new = f"{inner.rstrip()}\n{ind}{key_s}: {self._dump(value, ind, False)}\n{self._line_indent(obj.start)}"
            elif "\n" in inner or obj is self.root:
                base = self._line_indent(obj.start)
                ind = base + self.unit
                new = f"\n{ind}{key_s}: {self._dump(value, ind, False)}\n{base}"
            else:
                new = f"{key_s}: {self._dump(value, '', True)}"
            self._splice(obj.start + 1, obj.end - 1, new)
            return
        last = obj.members[-1]
        after = last.value.end
        j = self._skip_ws_comments(after)
        trailing = t[j:j + 1] == ","
        inline = "\n" not in t[obj.start:obj.end]
        if inline:
            ins = f", {key_s}: {self._dump(value, '', True)}"
            pos = j + 1 if trailing else after
            self._splice(pos, pos, ins if not trailing else ins[1:] + ",")
            return
        ind = self._line_indent(last.key_start)
        member = f"{key_s}: {self._dump(value, ind, False)}"
        # insert before the closing brace's line, after any trailing comment of the last member
        close = obj.end - 1
        k = close
        while k > after and t[k - 1] in " \t\r\n":
            k -= 1
        insert_at = k
        new = (f"\n{ind}{member}" + ("," if trailing else "")).replace("\n", self.nl)
        self.text = t[:insert_at] + new + t[insert_at:]
        if not trailing:
            self.text = self.text[:after] + "," + self.text[after:]
        self.root = parse(self.text)
        self._data = None

    def _skip_ws_comments(self, i: int) -> int:
        p = _Parser(self.text)
        p.i = i
        p.ws()
        return p.i

    def delete(self, path: list[str | int]) -> bool:
        parent = self._node(path[:-1])
        if parent is None or parent.kind != "obj":
            return False
        idx = next((i for i in range(len(parent.members) - 1, -1, -1) if parent.members[i].key == path[-1]), None)
        if idx is None:
            return False
        mem = parent.members[idx]
        t = self.text
        if len(parent.members) == 1:
            end = self._skip_ws_comments(mem.value.end)
            end = end + 1 if t[end:end + 1] == "," else mem.value.end
            start = mem.key_start
            ls = t.rfind("\n", 0, start)
            if ls > parent.start and not t[ls + 1:start].strip():
                start = ls - 1 if t[ls - 1] == "\r" else ls
            self._splice(start, end, "")
        elif idx < len(parent.members) - 1:
            start, end = mem.key_start, parent.members[idx + 1].key_start
            ls = t.rfind("\n", 0, start) + 1
            if not t[ls:start].strip():          # whole lines: cut from line start to next key's line start
                start = ls
                end = t.rfind("\n", 0, end) + 1 if not t[t.rfind("\n", 0, end) + 1:end].strip() else end
            self._splice(start, end, "")
        else:                                    # last of several
            end = self._skip_ws_comments(mem.value.end)
            own_comma = t[end:end + 1] == ","
            start = mem.key_start
            ls = t.rfind("\n", 0, start)
            if not t[ls + 1:start].strip():
                start = ls - 1 if t[ls - 1] == "\r" else ls
            self.text = t[:start] + t[end + 1 if own_comma else mem.value.end:]
            if not own_comma:                    # drop the comma that preceded this member
                prev_end = parent.members[idx - 1].value.end
                c = self._skip_ws_comments(prev_end)
                if self.text[c:c + 1] == ",":
                    self.text = self.text[:c] + self.text[c + 1:]
            self.root = parse(self.text)
        self._data = None
        return True
