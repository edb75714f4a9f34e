"""Put agent files back, byte for byte, from the first backup onboard took of each, and say which
gateway tokens the restored files no longer carry (the CLI revokes them)."""
from __future__ import annotations

import re
from pathlib import Path

from .backup import Backups

_TOKEN = re.compile(rb"alk_([0-9a-f]{16})_[A-Za-z0-9_-]{20,64}")


def token_ids(paths: list[Path]) -> set[str]:
    """Ids of the gateway tokens written literally in ``paths`` (missing files carry none)."""
    out: set[str] = set()
    for p in paths:
        try:
            out.update(m.group(1).decode() for m in _TOKEN.finditer(p.read_bytes()))
        except OSError:
            continue
    return out


def restore(home: Path, project: Path | None = None,
            agents: list[str] | None = None) -> tuple[list[dict], set[str]]:
    """Restore every file recorded for ``agents`` (all when None). With ``project``, only files under
    ``home`` or ``project``; files onboard created are removed again. Returns what was done per file,
    and the ids of the tokens the files carried before and no longer carry after."""
    under = [home, project] if project else None
    backups = Backups(home)
    files = backups.files(agents, under)
    before = token_ids(files)
    done = backups.restore(agents, under)
    # a token another onboarded file still carries stays valid
    return done, before - token_ids(files) - token_ids(backups.files())
