"""The span editor keeps every byte it is not asked to change."""
from __future__ import annotations

import json

import json5
import pytest
from hypothesis import given, settings, strategies as st

from proxy.discover.jsonedit import JsonDoc, JsonEditError, parse

JSONC = """{
  // leading comment
  "a": 1, /* inline */
  "servers": {
    "x": {"command": "npx", "args": ["-y", "srv"],}, // trailing comma + comment
    "y": {
      "url": "http://h/mcp",
    },
  },
  "empty": {},
}
"""


def test_reads_comments_trailing_commas_and_json5():
    assert JsonDoc(JSONC).data == {"a": 1, "servers": {"x": {"command": "npx", "args": ["-y", "srv"]},
                                                       "y": {"url": "http://h/mcp"}}, "empty": {}}
    j5 = "// c\n{unquoted: 'single', hex: 0x10, n: +1.5, inf: Infinity, list: [1, 2,],}"
    d = JsonDoc(j5).data
    assert d["unquoted"] == "single" and d["hex"] == 16 and d["n"] == 1.5 and d["list"] == [1, 2]
    assert d == {k: v for k, v in json5.loads(j5).items()}


def test_replace_keeps_everything_else():
    d = JsonDoc(JSONC)
    assert d.set(["servers", "y", "url"], "http://gw/mcp/y")
    assert d.text == JSONC.replace('"http://h/mcp"', '"http://gw/mcp/y"')
    assert not d.set(["servers", "y", "url"], "http://gw/mcp/y")     # same value: no edit


def test_insert_keeps_trailing_comma_style_and_comments():
    d = JsonDoc(JSONC)
    d.set(["servers", "y", "type"], "http")
    assert '"url": "http://h/mcp",\n      "type": "http",\n    },' in d.text
    d.set(["env", "ANTHROPIC_BASE_URL"], "http://gw/anthropic")
    assert d.text.rstrip().endswith('"empty": {},\n  "env": {\n    "ANTHROPIC_BASE_URL": "http://gw/anthropic"\n  },\n}')
    d.set(["servers", "x", "env"], {"A": "1"})                        # single-line object stays single-line
    assert '"x": {"command": "npx", "args": ["-y", "srv"], "env": {"A": "1"},}, // trailing comma + comment' in d.text
    for comment in ("// leading comment", "/* inline */", "// trailing comma + comment"):
        assert comment in d.text
    assert json5.loads(d.text)["servers"]["y"]["type"] == "http"


def test_insert_without_trailing_commas_after_a_line_comment():
    src = '{\n  "a": 1, // one\n  "b": 2 // two\n}\n'
    d = JsonDoc(src)
    d.set(["c"], 3)
    assert d.text == '{\n  "a": 1, // one\n  "b": 2, // two\n  "c": 3\n}\n'
    d.delete(["c"])
    assert d.text == src


def test_delete_members_first_middle_last_only():
    d = JsonDoc('{\n  "a": 1,\n  "b": 2,\n  "c": 3\n}')
    d.delete(["b"])
    assert d.text == '{\n  "a": 1,\n  "c": 3\n}'
    d.delete(["c"])
    assert d.text == '{\n  "a": 1\n}'
    d.delete(["a"])
    assert json.loads(d.text) == {}
    assert not d.delete(["zzz"])


def test_indentation_of_the_file_is_used():
    d = JsonDoc('{\n    "a": {\n        "b": 1\n    }\n}')
    d.set(["a", "c"], {"d": [1]})
    assert d.text == '{\n    "a": {\n        "b": 1,\n        "c": {\n            "d": [\n                1\n            ]\n        }\n    }\n}'


@pytest.mark.parametrize("bad", ['{"a": 1', '{"a" 1}', '{"a": 1} x', "/* open", '{"a": "x}'])
def test_bad_input_is_a_clear_error(bad):
    with pytest.raises(JsonEditError, match="line"):
        parse(bad)
    with pytest.raises(JsonEditError, match="too deep"):
        parse("[" * 50000)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=6), kids, max_size=3),
    max_leaves=10)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=6), json_values, max_size=4), st.text(min_size=1, max_size=6),
       json_values, st.sampled_from([None, 2, 4]))
def test_set_matches_a_plain_dict_update(data, key, value, indent):
    d = JsonDoc(json.dumps(data, indent=indent))
    assert d.data == data
    if "k" in data and not isinstance(data["k"], dict):
        with pytest.raises(JsonEditError):
            d.set(["k", key], value)
        return
    d.set(["k", key], value)
    expect = {**data, "k": {**data.get("k", {}), key: value}}
    assert json.loads(d.text) == expect
    d.delete(["k", key])
    expect["k"].pop(key)
    assert json.loads(d.text) == expect


def test_crlf_files_keep_crlf():
    src = '{\r\n  "a": 1,\r\n  "b": {\r\n    "c": 2\r\n  }\r\n}\r\n'
    d = JsonDoc(src)
    d.set(["b", "d"], {"e": 3})
    d.set(["f"], 4)
    assert "\n" not in d.text.replace("\r\n", "")
    assert json.loads(d.text) == {"a": 1, "b": {"c": 2, "d": {"e": 3}}, "f": 4}
    d.delete(["f"])
    d.delete(["b", "d"])
    assert d.text == src


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('{}[]:,"\'/*\\\n abc01-+.eE')), max_size=40))
def test_garbage_is_a_json_edit_error_never_a_crash(text):
    try:
        d = JsonDoc(text)
    except JsonEditError:
        return
    if isinstance(d.data, dict):            # whatever parsed must also take an edit
        d.set(["k"], 1)
        assert JsonDoc(d.text).data["k"] == 1
