"""Put agent files back, byte for byte, from the first backup onboard took of each."""
from __future__ import annotations

from pathlib import Path

from .backup import Backups


def restore(home: Path, project: Path | None = None, agents: list[str] | None = None) -> list[dict]:
    """Restore every file recorded for ``agents`` (all when None). With ``project``, only files under
    ``home`` or ``project``; files onboard created are removed again."""
    under = [home, project] if project else None
    return Backups(home).restore(agents, under)
