"""Load policy files and folders into an Engine, validating strictly.

``load_engine(paths)`` reads files (and ``*.yaml`` / ``*.yml`` in folders, sorted by name),
validates each (schema.py), then checks across files: duplicate workflow names and rule ids,
rules naming a missing workflow, conflicting defaults. All errors are collected and raised as
one PolicyError whose ``.errors`` lists each (file, line, message, hint).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from .engine import Engine
from .model import PolicyError
from .schema import PolicyDoc, check_document
from .yamlsrc import parse_yaml

_MAX_BYTES = 4 * 1024 * 1024


def policy_files(paths: list[str | Path]) -> list[Path]:
    """Expand files and folders into the ordered list of policy files; raises PolicyError."""
    out: list[Path] = []
    errors: list[PolicyError] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(x for x in path.iterdir()
                           if x.is_file() and x.suffix in (".yaml", ".yml") and not x.name.startswith("."))
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            errors.append(PolicyError(str(p), None, "no such policy file or folder",
                                      "check the path (relative paths are resolved from the config file)"))
    if errors:
        raise _combine(errors)
    return out


def _combine(errors: list[PolicyError]) -> PolicyError:
    first = errors[0]
    return PolicyError(first.file, first.line, first.message, first.hint, errors=list(errors))


def read_documents(files: list[Path]) -> tuple[list[PolicyDoc], list[PolicyError], str]:
    """Parse + validate each file. Returns (docs, errors, version hash of the contents)."""
    docs, errors = [], []
    digest = hashlib.sha256()
    for f in files:
        name = str(f)
        try:
            raw = f.read_bytes()
        except OSError as e:
            errors.append(PolicyError(name, None, f"cannot read policy file: {e.strerror or e}",
                                      "check the file exists and is readable"))
            continue
        digest.update(name.encode() + b"\0" + raw + b"\0")
        if len(raw) > _MAX_BYTES:
            errors.append(PolicyError(name, None, f"policy file is too large ({len(raw)} bytes)",
                                      f"split it; the limit is {_MAX_BYTES} bytes per file"))
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            errors.append(PolicyError(name, None, f"policy file is not UTF-8 ({e.reason})",
                                      "save it as UTF-8"))
            continue
        doc, errs = parse_document(text, name)
        docs.append(doc)
        errors.extend(errs)
    return docs, errors, digest.hexdigest()[:16]


def parse_document(text: str, file: str = "<policy>") -> tuple[PolicyDoc, list[PolicyError]]:
    """Parse and validate one policy text; never raises (errors are returned)."""
    try:
        data = parse_yaml(text, file)
    except PolicyError as e:
        return PolicyDoc(file=file, stem=Path(file).stem or "policy"), [e]
    try:
        return check_document(data, file)
    except RecursionError:
        return PolicyDoc(file=file, stem="policy"), [PolicyError(file, None, "structure nested too deeply",
                                                                 "simplify the file")]


def build_engine(docs: list[PolicyDoc], version: str = "", errors: list[PolicyError] | None = None) -> Engine:
    """Cross-file checks + the Engine; raises PolicyError listing every error."""
    errors = list(errors or [])
    workflows, wf_where = {}, {}
    for d in docs:
        for wf, line in d.workflows:
            if wf.name in workflows and wf_where[wf.name][0] != d.file:
                f, ln = wf_where[wf.name]
                errors.append(PolicyError(d.file, line, f"duplicate approval workflow {wf.name!r}",
                                          f"already defined in {f}:{ln}; rename one"))
                continue
            workflows.setdefault(wf.name, wf)
            wf_where.setdefault(wf.name, (d.file, line))
    ids: dict[str, tuple[str, int | None]] = {}
    for d in docs:
        for rid, line in d.ids:
            if rid in ids:
                f, ln = ids[rid]
                errors.append(PolicyError(d.file, line, f"duplicate rule id {rid!r}",
                                          f"already used at {f}:{ln}; ids must be unique across files"))
            else:
                ids[rid] = (d.file, line)
    for d in docs:
        for name, line, where in d.workflow_refs:
            if name not in workflows:
                known = ", ".join(sorted(workflows)) or "none defined"
                errors.append(PolicyError(d.file, line, f"{where} names approval workflow {name!r}, "
                                          "which is not defined",
                                          f"define it under approval_workflows (known: {known})"))
    defaults: dict[str, tuple] = {}
    for d in docs:
        for key, (value, line) in d.defaults.items():
            if key in defaults and defaults[key][0] != value:
                v0, f0, l0 = defaults[key]
                errors.append(PolicyError(d.file, line, f"defaults.{key} is {value!r} here but {v0!r} "
                                          f"in {f0}:{l0}", "set defaults in one file only"))
            else:
                defaults.setdefault(key, (value, d.file, line))
    budget_names: dict[str, tuple] = {}
    for d in docs:
        for b, line in d.budgets:
            if b.name in budget_names and budget_names[b.name][0] != d.file:
                errors.append(PolicyError(d.file, line, f"duplicate budget {b.name!r}",
                                          f"already defined in {budget_names[b.name][0]}; rename one"))
            budget_names.setdefault(b.name, (d.file, line))
    if errors:
        raise _combine(errors)
    prices: dict[str, dict] = {}
    for d in docs:
        prices.update(d.prices)
    meta = next((d.metadata for d in docs if d.metadata), {})
    return Engine(
        rules=[r for d in docs for r in d.rules],
        source_files=[d.file for d in docs], version=version or "empty", workflows=workflows,
        models=[m for d in docs for m in d.models], budgets=[b for d in docs for b, _ in d.budgets],
        rate_limits=[r for d in docs for r in d.rate_limits], prices=prices,
        default_action=defaults.get("action", ("allow",))[0],
        default_justification=defaults.get("justification", ("none",))[0],
        default_workflow=defaults.get("approval_workflow", (None,))[0], metadata=meta)


def load_engine(paths: list[str | Path]) -> Engine:
    """Files or folders -> Engine. Raises PolicyError (``.errors`` lists every problem)."""
    if not paths:
        return Engine.empty()
    files = policy_files(paths)
    docs, errors, version = read_documents(files)
    return build_engine(docs, version, errors)


def load_engine_text(text: str, file: str = "<policy>") -> Engine:
    """One policy given as text (tests, the admin API). Raises PolicyError."""
    doc, errors = parse_document(text, file)
    version = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]
    return build_engine([doc], version, errors)
