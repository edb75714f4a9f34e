"""``airlock sidecar rules``: rule text, argument checks, and --apply / --remove in a real namespace."""
from __future__ import annotations

import json
import sys

import pytest

from proxy import sidecar
from tests.deploy.netns import Netns, available
from tests.harness import ROOT, run_cli

CLI = [sys.executable, "-m", "proxy.cli.main", "sidecar", "rules"]
CLI_ENV = {"PYTHONPATH": str(ROOT)}


def test_rules_redirect_only_the_agent_uid_and_exempt_airlock():
    spec = sidecar.SidecarRules(agent_uids=[1000], proxy_port=15001, proxy_uid=10001, ipv6=False)
    cmds = [" ".join(c) for c in spec.commands()]
    assert cmds[0] == "iptables -w -t nat -N AIRLOCK"
    # Airlock's own uid returns before any redirect can match, loopback is never redirected
    ret = cmds.index("iptables -w -t nat -A AIRLOCK -m owner --uid-owner 10001 -j RETURN")
    redirect = cmds.index("iptables -w -t nat -A AIRLOCK -p tcp -m owner --uid-owner 1000 -m multiport "
                          "--dports 80,443 -j REDIRECT --to-ports 15001")
    assert ret < redirect
    assert "iptables -w -t nat -A AIRLOCK -d 127.0.0.0/8 -j RETURN" in cmds
    assert cmds[-1] == "iptables -w -t nat -A OUTPUT -p tcp -j AIRLOCK"
    assert not any(c.startswith("ip6tables") for c in cmds)


def test_ipv6_rules_mirror_ipv4_and_removal_undoes_both():
    spec = sidecar.SidecarRules(agent_uids=[1000, 1001], ports=(443,), exempt_cidrs=["10.0.0.0/8", "fd00::/8"])
    cmds = [" ".join(c) for c in spec.commands()]
    v6 = [c for c in cmds if c.startswith("ip6tables")]
    assert "ip6tables -w -t nat -A AIRLOCK -d ::1/128 -j RETURN" in v6
    assert "ip6tables -w -t nat -A AIRLOCK -d fd00::/8 -j RETURN" in v6
    assert "iptables -w -t nat -A AIRLOCK -d 10.0.0.0/8 -j RETURN" in cmds
    assert not any("fd00::/8" in c for c in cmds if c.startswith("iptables "))
    assert sum("--uid-owner 1001" in c and "--dports 443 " in c for c in cmds) == 2
    removal = [" ".join(c) for c in spec.remove_commands()]
    assert removal == ["iptables -w -t nat -D OUTPUT -p tcp -j AIRLOCK", "iptables -w -t nat -F AIRLOCK",
                       "iptables -w -t nat -X AIRLOCK", "ip6tables -w -t nat -D OUTPUT -p tcp -j AIRLOCK",
                       "ip6tables -w -t nat -F AIRLOCK", "ip6tables -w -t nat -X AIRLOCK"]


@pytest.mark.parametrize("kwargs, message", [
    ({"agent_uids": []}, "at least one --agent-uid"),
    ({"agent_uids": [1000], "proxy_uid": 1000}, "loop back"),
    ({"agent_uids": [1000], "proxy_port": 443}, "one of the redirected ports"),
    ({"agent_uids": [1000], "proxy_port": 70000}, "out of range"),
    ({"agent_uids": [1000], "chain": "bad chain; rm"}, "chain name"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(sidecar.RulesError, match=message):
        sidecar.SidecarRules(**kwargs)


def test_resolve_uid_accepts_names_and_numbers():
    assert sidecar.resolve_uid("nobody") == 65534
    assert sidecar.resolve_uid("1234") == 1234
    with pytest.raises(sidecar.RulesError, match="no such user"):
        sidecar.resolve_uid("no-such-user-here")


def test_cli_prints_a_script_and_json():
    res = run_cli("sidecar", "rules", "--agent-uid", "nobody", "--proxy-port", "15001", "--no-ipv6")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("#!/bin/sh\n")
    assert "--uid-owner 65534 -m multiport --dports 80,443 -j REDIRECT --to-ports 15001" in res.stdout
    # the script first drops an earlier copy, so running it twice is safe
    assert res.stdout.index("-X AIRLOCK 2>/dev/null || true") < res.stdout.index("-N AIRLOCK")
    res = run_cli("sidecar", "rules", "--agent-uid", "1000", "--json", "--remove")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["action"] == "remove" and out["applied"] is False and out["agent_uids"] == [1000]
    assert ["iptables", "-w", "-t", "nat", "-X", "AIRLOCK"] in out["commands"]


def test_cli_errors_say_what_to_do():
    res = run_cli("sidecar", "rules", "--agent-uid", "1000", "--proxy-port", "443")
    assert res.returncode == 2
    assert "pick another" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("sidecar", "rules", "--agent-uid", "no-such-user-here")
    assert res.returncode == 2 and "pass a numeric uid" in res.stderr


@pytest.mark.skipif(available() is not None, reason=str(available()))
def test_apply_is_idempotent_and_remove_cleans_up():
    with Netns() as ns:
        cli = [*CLI, "--agent-uid", "65534", "--proxy-port", "15001", "--proxy-uid", "0"]
        env = CLI_ENV
        for _ in range(2):                       # applying twice leaves one copy
            res = ns.exec(*cli, "--apply", env=env)
            assert "installed" in res.stdout
        for binary in ("iptables", "ip6tables"):
            rules = ns.exec(binary, "-t", "nat", "-S").stdout.splitlines()
            assert rules.count("-A OUTPUT -p tcp -j AIRLOCK") == 1, rules
            assert any("--uid-owner 65534" in r and "--to-ports 15001" in r for r in rules), rules
        res = ns.exec(*cli, "--remove", "--apply", env=env)
        assert "removed" in res.stdout
        for binary in ("iptables", "ip6tables"):
            assert "AIRLOCK" not in ns.exec(binary, "-t", "nat", "-S").stdout
        # removing again is harmless
        ns.exec(*cli, "--remove", "--apply", env=env)


@pytest.mark.skipif(available() is not None, reason=str(available()))
def test_apply_failure_leaves_nothing_and_explains():
    with Netns() as ns:
        # a bad CIDR makes iptables fail after the chain was created: the chain must not stay behind
        res = ns.exec(*CLI, "--agent-uid", "65534", "--exempt", "not-a-cidr", "--apply", env=CLI_ENV, check=False)
        assert res.returncode == 2
        assert "failed" in res.stderr and "nothing was left installed" in res.stderr
        assert "Traceback" not in res.stderr
        for binary in ("iptables", "ip6tables"):
            assert "AIRLOCK" not in ns.exec(binary, "-t", "nat", "-S").stdout
