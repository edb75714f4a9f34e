"""``airlock run`` with only some of Airlock's addons: the bench's way to price each addon group.

    python [-O] -m bench.airlock_addons --addons routing,identity,gateway -- run -c airlock.yaml

Sets ``proxy.server.ADDON_CHAIN`` to the given names (kept in the chain's order) and runs the CLI.
Benchmarks only: a real deployment always runs the whole chain.
"""
from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] != "--addons":
        sys.exit("usage: python -m bench.airlock_addons --addons a,b,c -- run -c airlock.yaml")
    wanted = [a for a in argv[1].split(",") if a]
    rest = argv[3:] if len(argv) > 2 and argv[2] == "--" else argv[2:]
    from proxy import server
    unknown = set(wanted) - set(server.ADDON_CHAIN)
    if unknown:
        sys.exit(f"unknown addons {sorted(unknown)}; the chain is {server.ADDON_CHAIN}")
    server.ADDON_CHAIN[:] = [a for a in server.ADDON_CHAIN if a in wanted]
    from proxy.cli.main import app
    sys.argv = ["airlock", *rest]
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
