"""examples/kubernetes: the pod's pieces must agree with each other and with Airlock's CLI."""
from __future__ import annotations

import json
import shlex

import pytest
import yaml

from proxy import config as airlock_config
from tests.harness import ROOT, run_cli

MANIFEST = ROOT / "examples" / "kubernetes" / "airlock-sidecar.yaml"


@pytest.fixture(scope="module")
def docs() -> dict:
    return {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text()) if d}


def containers(docs) -> dict:
    spec = docs["Pod"]["spec"]
    return {c["name"]: c for c in spec["initContainers"] + spec["containers"]}


def rules_args(init: dict) -> list[str]:
    """The `airlock sidecar rules ...` arguments inside the init container's shell line."""
    script = " ".join(init["args"])
    part = next(p for p in script.split("&&") if "sidecar rules" in p)
    words = shlex.split(part)
    return words[words.index("rules") + 1:]


def test_config_map_is_a_valid_airlock_config_with_only_the_sidecar_listener(docs, monkeypatch):
    monkeypatch.setenv("REDIS_PASSWORD", "r")
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", "c")
    raw = yaml.safe_load(docs["ConfigMap"]["data"]["airlock.yaml"])
    cfg = airlock_config.from_dict(raw, "configmap")
    assert cfg.listen["gateway"] is None and cfg.listen["proxy"] is None
    assert cfg.listen["sidecar"] and cfg.listen["admin"].startswith("127.0.0.1:")


def test_policy_in_the_config_map_validates(docs, tmp_path):
    f = tmp_path / "default.yaml"
    f.write_text(docs["ConfigMap"]["data"]["default.yaml"])
    res = run_cli("policy", "validate", str(f))
    assert res.returncode == 0, res.stderr


def test_init_container_rules_match_the_pod(docs):
    c = containers(docs)
    init, airlock, agent = c["airlock-rules"], c["airlock"], c["agent"]
    assert "NET_ADMIN" in init["securityContext"]["capabilities"]["add"]
    assert init["securityContext"]["runAsUser"] == 0
    args = rules_args(init)
    assert "--apply" in args
    # the same arguments, without --apply, through the real CLI
    res = run_cli("sidecar", "rules", *[a for a in args if a != "--apply"], "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    agent_uid = agent["securityContext"]["runAsUser"]
    airlock_uid = airlock["securityContext"]["runAsUser"]
    assert out["agent_uids"] == [agent_uid]
    cmds = [" ".join(x) for x in out["commands"]]
    assert any(f"--uid-owner {airlock_uid} -j RETURN" in x for x in cmds)
    # the redirect goes to the port Airlock's transparent listener uses
    raw = yaml.safe_load(docs["ConfigMap"]["data"]["airlock.yaml"])
    sidecar_port = int(raw["listen"]["sidecar"].rsplit(":", 1)[1])
    assert out["proxy_port"] == sidecar_port
    assert {"containerPort": sidecar_port, "name": "sidecar"} in airlock["ports"]
    assert "--sidecar" in airlock["args"]


def test_only_the_init_container_is_privileged_and_the_agent_needs_only_the_ca(docs):
    c = containers(docs)
    airlock, agent = c["airlock"], c["agent"]
    for ctr in (airlock, agent):
        sc = ctr["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
    assert airlock["securityContext"]["runAsUser"] != agent["securityContext"]["runAsUser"]
    env = {e["name"]: e for e in agent["env"]}
    assert not any("PROXY" in name for name in env)           # transparent: no proxy settings
    trust = next(m["mountPath"] for m in agent["volumeMounts"] if m["name"] == "trust")
    assert env["SSL_CERT_FILE"]["value"].startswith(trust + "/")
    assert env["NODE_EXTRA_CA_CERTS"]["value"].startswith(trust + "/")
    assert "secretKeyRef" in env["OPENAI_API_KEY"]["valueFrom"]   # a gateway token, from a Secret
    # the agent never mounts the CA's private key
    assert not any(m["name"] in ("airlock-ca", "airlock-data") for m in agent["volumeMounts"])
    raw = yaml.safe_load(docs["ConfigMap"]["data"]["airlock.yaml"])
    for probe in ("readinessProbe", "livenessProbe"):
        assert f"http://{raw['listen']['admin']}/healthz" in " ".join(airlock[probe]["exec"]["command"])
