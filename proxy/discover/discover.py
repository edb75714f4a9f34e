"""Read-only: which agents are installed under a home (and project), and what they use."""
from __future__ import annotations

from pathlib import Path

from .base import Agent, Files
from .docs import Doc, DocError
from .model import Report
from .registry import AGENTS


def load_files(agent: Agent, home: Path, project: Path | None) -> tuple[Files, list[str]]:
    """Existing files (and creatable ones, as empty docs); unreadable files become warnings."""
    files: Files = []
    warnings: list[str] = []
    for loc in agent.locations(home, project):
        if not loc.path.exists() and not loc.create:
            continue
        try:
            files.append((loc, Doc.load(loc.path, loc.fmt)))
        except DocError as e:
            warnings.append(f"{agent.name}: skipped {e}")
    return files, warnings


def found(files: Files, warnings: list[str]) -> bool:
    return any(doc.exists for _, doc in files) or bool(warnings)


def discover(home: Path, project: Path | None = None, only: list[str] | None = None) -> list[Report]:
    reports = []
    for name, agent in AGENTS.items():
        if only and name not in only:
            continue
        files, warnings = load_files(agent, home, project)
        if not found(files, warnings):
            continue
        reports.append(Report(agent=name, config_files=[str(loc.path) for loc, d in files if d.exists],
                              mcp_servers=agent.servers(files), model=agent.model(files), warnings=warnings))
    return reports
