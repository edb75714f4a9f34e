"""Timestamped backups under ``<home>/.airlock/backups/`` and the manifest restore reads.

Every write by onboard first copies the file's current bytes to
``backups/<UTC stamp>/<absolute path>``. ``manifest.json`` remembers, per file, the FIRST
backup taken since the last restore (or that the file did not exist), so restore always
returns to the state before Airlock first touched it, however many times onboard ran.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

import orjson

from .docs import write_atomic


class Backups:
    def __init__(self, home: Path):
        self.root = home / ".airlock" / "backups"
        self.manifest_path = self.root / "manifest.json"
        self.stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")

    def manifest(self) -> dict:
        try:
            m = orjson.loads(self.manifest_path.read_bytes())
        except FileNotFoundError:
            return {"version": 1, "files": {}}
        except orjson.JSONDecodeError as e:
            raise ValueError(f"{self.manifest_path}: corrupt manifest ({e}); fix or remove it") from None
        m.setdefault("files", {})
        return m

    def _save(self, m: dict) -> None:
        write_atomic(self.manifest_path, orjson.dumps(m, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))

    def save(self, path: Path, original: bytes | None, agent: str) -> str | None:
        """Back up ``original`` (None = the file does not exist yet); returns the backup path."""
        key = str(path.absolute())
        dest = None
        if original is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            os.chmod(self.root.parent, 0o700) if self.root.parent.stat().st_uid == os.getuid() else None
            dest = self.root / self.stamp / key.lstrip(os.sep)
            dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            dest.write_bytes(original)
            os.chmod(dest, 0o600)
        m = self.manifest()
        if key not in m["files"]:
            m["files"][key] = {"agent": agent, "backup": str(dest) if dest else None,
                               "sha256": hashlib.sha256(original).hexdigest() if original is not None else None,
                               "at": self.stamp}
            self._save(m)
        return str(dest) if dest else None

    def _selected(self, m: dict, agents: list[str] | None, under: list[Path] | None):
        for key, ent in sorted(m["files"].items()):
            if agents and ent["agent"] not in agents:
                continue
            p = Path(key)
            if under and ent["agent"] != "airlock" and not any(p.is_relative_to(u.absolute()) for u in under):
                continue
            yield key, ent, p

    def files(self, agents: list[str] | None = None, under: list[Path] | None = None) -> list[Path]:
        """The files ``restore`` with the same arguments would touch."""
        return [p for _, _, p in self._selected(self.manifest(), agents, under)]

    def restore(self, agents: list[str] | None = None, under: list[Path] | None = None) -> list[dict]:
        """Put files back from their first backup; returns what was done, per file."""
        m = self.manifest()
        done = []
        for key, ent, p in list(self._selected(m, agents, under)):
            if ent["backup"] is None:
                p.unlink(missing_ok=True)
                done.append({"file": key, "agent": ent["agent"], "action": "removed (did not exist before)"})
            else:
                data = Path(ent["backup"]).read_bytes()
                if ent.get("sha256") and hashlib.sha256(data).hexdigest() != ent["sha256"]:
                    raise ValueError(f"backup {ent['backup']} does not match its checksum; not restoring {key}")
                write_atomic(p, data)
                done.append({"file": key, "agent": ent["agent"], "action": "restored", "backup": ent["backup"]})
            del m["files"][key]
        self._save(m)
        return done
