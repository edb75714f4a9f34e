"""YAML with line numbers: mappings and sequences remember where each key and item starts.

Strict on the YAML level too: one document per file, no duplicate keys, no merge keys, no
custom tags. Every problem is a PolicyError with the file and 1-based line.
"""
from __future__ import annotations

import yaml

from .model import PolicyError

_MAX_DEPTH = 64
_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in
               ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "merge")}


class LMap(dict):
    """A mapping with ``line`` (its own) and ``lines[key]`` (where each key starts)."""

    __slots__ = ("line", "lines")

    def line_of(self, key) -> int | None:
        return self.lines.get(key, self.line)


class LList(list):
    """A sequence with ``line`` (its own) and ``lines[i]`` (where each item starts)."""

    __slots__ = ("line", "lines")

    def line_of(self, i: int) -> int | None:
        return self.lines[i] if 0 <= i < len(self.lines) else self.line


def _convert(loader: yaml.SafeLoader, node: yaml.Node, file: str, depth: int):
    if depth > _MAX_DEPTH:
        raise PolicyError(file, node.start_mark.line + 1, "structure nested too deeply",
                          f"policies are at most {_MAX_DEPTH} levels deep")
    line = node.start_mark.line + 1
    if node.tag not in _PLAIN_TAGS:
        raise PolicyError(file, line, f"YAML tag {node.tag!r} is not allowed",
                          "remove the tag; policies use plain YAML values")
    if isinstance(node, yaml.ScalarNode):
        try:
            return loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as e:
            raise PolicyError(file, line, f"invalid YAML value {node.value!r}: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}",
                              "quote the value to make it a string") from None
    if isinstance(node, yaml.SequenceNode):
        out = LList()
        out.line, out.lines = line, []
        for item in node.value:
            out.append(_convert(loader, item, file, depth + 1))
            out.lines.append(item.start_mark.line + 1)
        return out
    if isinstance(node, yaml.MappingNode):
        out = LMap()
        out.line, out.lines = line, {}
        for knode, vnode in node.value:
            kline = knode.start_mark.line + 1
            if knode.tag == "tag:yaml.org,2002:merge":
                raise PolicyError(file, kline, "YAML merge keys (<<) are not supported",
                                  "write the keys out explicitly")
            key = _convert(loader, knode, file, depth + 1)
            if isinstance(key, (list, dict)):
                raise PolicyError(file, kline, "a mapping key must be a plain value", "use a string key")
            if key in out:
                raise PolicyError(file, kline, f"duplicate key {key!r}",
                                  f"it is already set on line {out.lines[key]}; keep one")
            out[key] = _convert(loader, vnode, file, depth + 1)
            out.lines[key] = kline
        return out
    raise PolicyError(file, line, "unsupported YAML node", "use plain mappings, lists and scalars")


def parse_yaml(text: str, file: str):
    """Parse one YAML document into LMap / LList / scalars; raises PolicyError."""
    loader = None
    try:
        loader = yaml.SafeLoader(text)      # the reader rejects control characters right here
        node = loader.get_single_node()
        if node is None:
            return None
        return _convert(loader, node, file, 0)
    except PolicyError:
        raise
    except yaml.reader.ReaderError as e:
        raise PolicyError(file, None, f"invalid YAML: unacceptable character #x{e.character:04x}",
                          "remove control characters; policy files are plain UTF-8 text") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(x for x in (e.context, e.problem) if x) or "invalid YAML"
        raise PolicyError(file, line, f"invalid YAML: {what}",
                          "check indentation, quoting and that each key is followed by ':'") from None
    except yaml.YAMLError as e:
        raise PolicyError(file, None, f"invalid YAML: {str(e).splitlines()[0] if str(e) else e!r}",
                          "check the file is UTF-8 YAML") from None
    except RecursionError:
        raise PolicyError(file, None, "structure nested too deeply", "simplify the file") from None
    except (ValueError, TypeError, OverflowError) as e:   # odd scalars (dates, huge ints)
        raise PolicyError(file, None, f"invalid YAML value: {e}", "quote the value") from None
    finally:
        if loader is not None:
            loader.dispose()
