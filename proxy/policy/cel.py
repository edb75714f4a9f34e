"""CEL for policy conditions: compile once per load, evaluate against a call's context.

Context variables (DESIGN.md): ``args``, ``tool`` {name, server, changed}, ``agent``, ``subject``,
``account``, ``flow``, ``session`` {id}, ``justification``, ``request`` {host, path}, ``now``
(a CEL timestamp: ``now.getHours("Europe/Berlin")``, ``now.getDayOfWeek("UTC")``).
Missing values are empty strings; ``args`` is the call's arguments as given (use ``has(args.x)``
before reading an optional argument: reading a missing key is an evaluation error -> deny).

Helper functions: ``glob(value, pattern_or_list)``, ``has_secret(value)``, ``secrets(value)``
(list of secret kinds), ``lower(s)``, ``upper(s)``.
"""
from __future__ import annotations

import difflib
import fnmatch
import logging
import re
import threading
from datetime import datetime, timezone
from typing import Any, Callable

import celpy
import lark
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError, CELParser

from . import secrets as _secrets
from .model import CallContext

# cel-python logs every evaluation error at ERROR level; the engine reports them itself.
logging.getLogger("celpy").setLevel(logging.CRITICAL)

VARIABLES = ("args", "tool", "agent", "subject", "account", "flow", "session", "justification",
             "request", "now")
_TYPE_NAMES = {"int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type"}
_MACROS = {"exists", "all", "exists_one", "map", "filter", "reduce", "min"}


class CelError(Exception):
    """A CEL expression that does not compile (``column`` is 1-based within the expression)."""

    def __init__(self, message: str, column: int | None = None, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.column = column
        self.hint = hint


class CelEvalError(Exception):
    """A condition that failed to evaluate (the engine fails closed on it)."""


# ---- helper functions (receive CEL values, which subclass str / dict / list) -------------------

def _glob(value: Any, pattern: Any) -> celtypes.BoolType:
    if isinstance(pattern, (list, tuple)):
        return celtypes.BoolType(any(fnmatch.fnmatchcase(str(value), str(p)) for p in pattern))
    return celtypes.BoolType(fnmatch.fnmatchcase(str(value), str(pattern)))


def _has_secret(value: Any) -> celtypes.BoolType:
    return celtypes.BoolType(_secrets.has_secret(value))


def _find_secrets(value: Any) -> celtypes.ListType:
    return celtypes.ListType([celtypes.StringType(k) for k in _secrets.find_secrets(value)])


def _lower(value: Any) -> celtypes.StringType:
    return celtypes.StringType(str(value).lower())


def _upper(value: Any) -> celtypes.StringType:
    return celtypes.StringType(str(value).upper())


FUNCTIONS: dict[str, Callable] = {
    "glob": _glob, "has_secret": _has_secret, "secrets": _find_secrets,
    "lower": _lower, "upper": _upper,
}
# cel-python's compiled runner calls a function by its dotted name inside the globals of
# ``celpy.evaluation``: publish ours there under unique names.
for _name, _fn in FUNCTIONS.items():
    _fn.__module__ = "celpy.evaluation"
    _fn.__qualname__ = f"airlock_{_name}"
    setattr(celpy.evaluation, f"airlock_{_name}", _fn)
_KNOWN_FUNCTIONS = set(FUNCTIONS) | {k for k in celpy.base_functions if k[0].isalpha()} | {
    "has", "dyn", "timestamp", "duration"}


# ---- compile ------------------------------------------------------------------------------------

_env_lock = threading.Lock()
_env: celpy.Environment | None = None


def _environment() -> celpy.Environment:
    global _env
    with _env_lock:
        if _env is None:
            # The lark parser is a class-level singleton inside cel-python; the compiled runner
            # needs it built with TranspilerTree nodes.
            parser = CELParser.CEL_PARSER
            if parser is not None and parser.options.tree_class is not celpy.CompiledRunner.tree_node_class:
                CELParser.CEL_PARSER = None
            _env = celpy.Environment(runner_class=celpy.CompiledRunner)
        return _env


def _names(tree: lark.Tree) -> tuple[set[str], set[str], set[str]]:
    """(identifiers, macro-bound variables, called global functions) in an AST."""
    idents: set[str] = set()
    bound: set[str] = set()
    funcs: set[str] = set()
    for node in tree.iter_subtrees():
        if node.data == "ident" and node.children:
            idents.add(str(node.children[0]))
        elif node.data == "ident_arg" and node.children:
            funcs.add(str(node.children[0]))
        elif node.data == "member_dot_arg" and len(node.children) >= 3:
            if str(node.children[1]) in _MACROS:
                exprlist = node.children[2]
                if isinstance(exprlist, lark.Tree) and exprlist.children:
                    first = exprlist.children[0]
                    if isinstance(first, lark.Tree):
                        ids = [t for t in first.iter_subtrees() if t.data == "ident"]
                        if len(ids) == 1:
                            bound.add(str(ids[0].children[0]))
    return idents, bound, funcs


class Program:
    """One compiled condition. ``evaluate`` returns a Python bool or raises CelEvalError."""

    __slots__ = ("source", "variables", "_runner", "_const", "_fast")

    def __init__(self, source: str, variables: frozenset[str], runner: Any, const: bool | None):
        self.source = source
        self.variables = variables
        self._runner = runner
        self._const = const
        self._fast = _FAST_PATHS.get("".join(source.split()))

    def evaluate(self, activation: "Activation") -> bool:
        if self._const is not None:
            return self._const
        if self._fast is not None:
            return self._fast(activation.ctx)
        context = activation.values(self.variables)
        try:
            with _eval_lock:
                value = self._runner.evaluate(context)
        except Exception as e:  # celpy wraps most problems; anything else is also a failure
            raise CelEvalError(_eval_message(e)) from None
        if isinstance(value, celtypes.BoolType) or isinstance(value, bool):
            return bool(value)
        raise CelEvalError(f"the expression gave {type(value).__name__.replace('Type', '').lower()} "
                           f"{_short(value)}, not a bool")


# Expressions so common that they skip the CEL interpreter; each gives exactly what CEL would.
_FAST_PATHS: dict[str, Callable[[CallContext], bool]] = {
    "tool.changed": lambda c: bool(c.tool_changed),
    "!tool.changed": lambda c: not c.tool_changed,
    "has_secret(args)": lambda c: _secrets.has_secret(c.args),
    "!has_secret(args)": lambda c: not _secrets.has_secret(c.args),
}

_eval_lock = threading.RLock()   # cel-python's compiled runner keeps evaluation state in module globals


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _eval_message(e: Exception) -> str:
    # celpy: CELEvalError("evaluation error", ExcType, (message, ExcType, args)) -> the message
    args = getattr(e, "args", ())
    for _ in range(4):
        if (len(args) >= 3 and args[0] == "evaluation error" and isinstance(args[2], tuple)
                and args[2]):
            args = args[2]
            if isinstance(args[0], Exception):
                args = args[0].args
            continue
        break
    msg = str(args[0]) if args else str(e)
    return msg or type(e).__name__


_HAS = re.compile(r"= lambda activation: (not isinstance\(celpy\.evaluation\.result\(activation, ex_\d+_h\), "
                  r"CELEvalError\))$", re.M)


def _fix_has(runner: Any) -> None:
    """cel-python 0.5's transpiler makes ``has()`` return a Python bool, which its own ``&&``,
    ``!`` and ``?:`` reject ("no such overload"); wrap it in a CEL bool and recompile."""
    tp = runner.tp
    fixed = _HAS.sub(r"= lambda activation: celpy.celtypes.BoolType(\1)", tp.source_text)
    if fixed != tp.source_text:
        tp.source_text = fixed
        tp.executable_code = compile(fixed, "<cel>", "exec")


def compile_expression(source: str) -> Program:
    """Compile one condition; raises CelError with a column and a hint."""
    if not isinstance(source, str) or not source.strip():
        raise CelError("empty expression", None, "write a CEL boolean, e.g. \"args.path.startsWith('/etc')\"")
    env = _environment()
    try:
        with _env_lock:
            ast = env.compile(source)
    except CELParseError as e:
        first = str(e).splitlines()[0] if str(e) else "syntax error"
        raise CelError(f"CEL syntax error: {first}", getattr(e, "column", None),
                       "check quotes, parentheses and operators (&&, ||, !)") from None
    except Exception as e:  # lark errors on odd input (deep nesting, bad escapes)
        raise CelError(f"CEL syntax error: {type(e).__name__}: {e}".splitlines()[0], None,
                       "check quotes, parentheses and operators") from None
    idents, bound, funcs = _names(ast)
    unknown = sorted(idents - set(VARIABLES) - bound - _TYPE_NAMES)
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, VARIABLES, n=1)
        raise CelError(f"unknown variable {name!r} in CEL expression", None,
                       f"did you mean {close[0]!r}?" if close else f"variables are: {', '.join(VARIABLES)}")
    bad_funcs = sorted(funcs - _KNOWN_FUNCTIONS)
    if bad_funcs:
        name = bad_funcs[0]
        close = difflib.get_close_matches(name, sorted(_KNOWN_FUNCTIONS), n=1)
        raise CelError(f"unknown function {name!r} in CEL expression", None,
                       f"did you mean {close[0]!r}?" if close else
                       f"helpers are: {', '.join(sorted(FUNCTIONS))}")
    const = {"true": True, "false": False}.get(source.strip())
    try:
        with _env_lock:
            runner = env.program(ast, functions=FUNCTIONS)
            _fix_has(runner)
    except Exception as e:
        raise CelError(f"CEL expression cannot be compiled: {e}".splitlines()[0], None,
                       "simplify the expression") from None
    return Program(source, frozenset(idents & set(VARIABLES)), runner, const)


# ---- context ------------------------------------------------------------------------------------

def _s(value: str | None) -> celtypes.StringType:
    return celtypes.StringType(value or "")


class Activation:
    """The CEL variables of one call, built lazily (only what an expression reads), once."""

    __slots__ = ("ctx", "_cache")

    def __init__(self, ctx: CallContext):
        self.ctx = ctx
        self._cache: dict[str, Any] = {}

    def values(self, names: frozenset[str]) -> dict[str, Any]:
        cache = self._cache
        for name in names:
            if name not in cache:
                cache[name] = self._build(name)
        return cache

    def _build(self, name: str) -> Any:
        c = self.ctx
        if name == "args":
            return json_to_cel(c.args if isinstance(c.args, dict) else {})
        if name == "tool":
            return celtypes.MapType({
                celtypes.StringType("name"): _s(c.tool), celtypes.StringType("server"): _s(c.server),
                celtypes.StringType("changed"): celtypes.BoolType(bool(c.tool_changed))})
        if name == "session":
            return celtypes.MapType({celtypes.StringType("id"): _s(c.session_id)})
        if name == "request":
            return celtypes.MapType({celtypes.StringType("host"): _s(c.request_host),
                                     celtypes.StringType("path"): _s(c.request_path)})
        if name == "now":
            now = c.now or datetime.now(timezone.utc)
            if now.tzinfo is None:
                now = now.replace(tzinfo=timezone.utc)
            return celtypes.TimestampType(now)
        if name == "justification":
            return _s(c.justification)
        return _s(getattr(c, name))   # agent, subject, account, flow
