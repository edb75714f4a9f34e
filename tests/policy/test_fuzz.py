"""Property-based: the parser meets random input and only ever raises PolicyError."""
from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.policy import CallContext, PolicyError, load_engine_text
from proxy.policy.schema import (CONDITION_KEYS, TOOL_KEYS, TOP_KEYS, WORKFLOW_KEYS)

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**20), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["allow", "deny", "require_approval", "required",
                                                           "*", "bash", "args.x == 1", "true", "(", "w"]))
keys = st.sampled_from(sorted(set(TOP_KEYS + TOOL_KEYS + CONDITION_KEYS + WORKFLOW_KEYS))) | st.text(max_size=8)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
                      max_leaves=25)


def _load_only_policy_errors(text: str) -> None:
    try:
        e = load_engine_text(text)
    except PolicyError as err:
        assert err.errors and all(isinstance(x, PolicyError) for x in err.errors)
        assert str(err)
        return
    # a policy that loads must decide without raising
    d = e.decide(CallContext(tool="bash", args={"x": 1}))
    assert d.action in ("allow", "deny", "require_approval")


@SETTINGS
@given(st.text(max_size=300))
def test_random_text(text):
    _load_only_policy_errors(text)


@SETTINGS
@given(st.dictionaries(keys, values, max_size=6))
def test_random_structures(doc):
    _load_only_policy_errors(yaml.safe_dump(doc, allow_unicode=True))


tool = st.fixed_dictionaries({"name": st.sampled_from(["bash", "*", "git*", ""]) | scalars},
                             optional={k: values for k in TOOL_KEYS if k != "name"})


@SETTINGS
@given(st.lists(tool, max_size=4), st.lists(st.dictionaries(st.sampled_from(WORKFLOW_KEYS), values), max_size=2))
def test_random_tools_and_workflows(tools, workflows):
    _load_only_policy_errors(yaml.safe_dump({"version": "1.0", "tools": tools, "approval_workflows": workflows}))


@SETTINGS
@given(st.text(alphabet="args.x=!&|()'\"[]{}<>+-*/%?:,0123456789 trueflsnhu_", max_size=60))
def test_random_cel_expressions(expr):
    text = yaml.safe_dump({"tools": [{"name": "bash", "conditions": [{"expression": expr, "action": "deny"}]}]})
    _load_only_policy_errors(text)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4),
                           max_leaves=20)
_ENGINE = load_engine_text("""
tools:
  - name: "*"
    conditions:
      - {expression: "tool.changed", action: require_approval}
      - {expression: "has_secret(args)", action: deny}
      - {expression: "has(args.command) && args.command.contains('rm')", action: deny}
      - {expression: "glob(tool.name, ['a*', 'b?']) && agent == 'x'", action: deny}
      - {expression: "has(args.n) && args.n > 3", action: require_approval}
""", "fuzz.yaml")


@SETTINGS
@given(st.text(max_size=20), st.none() | st.text(max_size=10), st.dictionaries(st.text(max_size=10), json_values),
       st.booleans(), st.none() | st.text(max_size=10))
def test_decide_never_raises(tool, server, args, changed, agent):
    d = _ENGINE.decide(CallContext(tool=tool, server=server, args=args, tool_changed=changed, agent=agent))
    assert d.action in ("allow", "deny", "require_approval") and d.reason
    if changed:
        assert d.action == "require_approval"
