"""Airlock runs cel-python's compiled (transpiled) runner, patched for has(); check it agrees with
cel-python's reference interpreter on a spread of expressions (the interpreter runs in a
subprocess because cel-python shares one parser per process)."""
from __future__ import annotations

import json
import subprocess
import sys

from proxy.policy.cel import Activation, CelEvalError, compile_expression
from proxy.policy.model import CallContext

DATA = {"command": "deploy to production", "path": "/etc/passwd", "n": 5, "list": ["a", "b", "c"],
        "nested": {"a": {"b": "c"}}, "f": 2.5, "s": "42", "b": True, "nul": None}
EXPRS = [
    "args.command.contains('deploy') && args.command.contains('production')",
    "has(args.path) && args.path.startsWith('/etc')", "!has(args.nope) || args.nope == 1",
    "has(args.n) ? args.n > 3 : false", "!has(args.nope)", "has(args.nope) && args.nope.contains('x')",
    "has(args.nope) ? args.nope == 1 : true", "args.n * 2 == 10", "args.n / 0 == 1 || true",
    "true || args.n / 0 == 1", "args.n / 0 == 1 && false", "args.list.exists(x, x == 'b')",
    "args.list.all(x, size(x) == 1)", "size(args.list) == 3", "'b' in args.list",
    "args.command.matches('^deploy')", "args.nested.a.b == 'c'", "has(args.nested.a)",
    "args.n >= 5 && args.n < 6", "args.f > 1.5", "args.command.endsWith('production')", "int(args.s) == 42",
    "args.list.filter(x, x != 'a').size() == 2", "args.list.map(x, x + '!')[0] == 'a!'",
    "args.missing == 1", "!(args.n == 5)", "args.b", "!args.b", "args.nul == null", "type(args.n) == int",
    "args.list[5] == 'a'", "args.n == 'x'", "args.list.exists_one(x, x == 'a')",
]
REFERENCE = """
import json, sys, celpy
from celpy.adapter import json_to_cel
data, exprs = json.loads(sys.stdin.read())
env = celpy.Environment()
out = []
for e in exprs:
    try:
        v = env.program(env.compile(e)).evaluate({"args": json_to_cel(data)})
        out.append(bool(v) if isinstance(v, celpy.celtypes.BoolType) else "error")
    except Exception:
        out.append("error")
print(json.dumps(out))
"""


def test_compiled_runner_agrees_with_the_reference_interpreter():
    proc = subprocess.run([sys.executable, "-c", REFERENCE], input=json.dumps([DATA, EXPRS]),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    reference = json.loads(proc.stdout)
    ours = []
    for e in EXPRS:
        try:
            ours.append(compile_expression(e).evaluate(Activation(CallContext(tool="t", args=DATA))))
        except CelEvalError:
            ours.append("error")
    assert list(zip(EXPRS, ours)) == list(zip(EXPRS, reference))
    assert "error" in ours and True in ours and False in ours
