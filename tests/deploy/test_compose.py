"""docker-compose.yml: validated by Debian's docker-compose (no engine needed), and Airlock's
config inside it checked against the services the stack really defines."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from proxy import config as airlock_config
from tests.harness import ROOT

COMPOSE = ROOT / "docker-compose.yml"
SECRETS = {"AIRLOCK_ADMIN_TOKEN": "adm-test-token", "REDIS_PASSWORD": "redis-test-pw",
           "CLICKHOUSE_PASSWORD": "ch-test-pw", "GRAFANA_CLICKHOUSE_PASSWORD": "grafana-ch-pw",
           "GRAFANA_ADMIN_PASSWORD": "grafana-admin-pw"}

pytestmark = pytest.mark.skipif(shutil.which("docker-compose") is None,
                                reason="docker-compose not installed (make setup: apt-get install docker-compose)")


def compose(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    empty = tmp_path / "empty.env"           # ignore any developer .env beside the file
    empty.write_text("")
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(["docker-compose", "--env-file", str(empty), "-f", str(COMPOSE), *args],
                          capture_output=True, text=True, env={**base, **env}, timeout=60)


@pytest.fixture
def stack(tmp_path) -> dict:
    res = compose("config", env=SECRETS, tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    return yaml.safe_load(res.stdout)


def test_compose_file_validates(tmp_path):
    res = compose("config", "-q", env=SECRETS, tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_every_secret_is_required_from_the_environment(tmp_path, missing):
    env = {k: v for k, v in SECRETS.items() if k != missing}
    res = compose("config", "-q", env=env, tmp_path=tmp_path)
    assert res.returncode != 0
    assert f"set {missing}" in res.stderr


def test_no_secret_is_written_in_the_files():
    raw = COMPOSE.read_text() + (ROOT / "deploy" / "airlock.yaml").read_text()
    for value in SECRETS.values():
        assert value not in raw
    doc = yaml.safe_load(COMPOSE.read_text())
    for name, svc in doc["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if re.search(r"PASSWORD|TOKEN|API_KEY|AUTH", key):
                assert str(value).startswith("${"), f"{name}.{key} must come from the environment"


def test_stack_has_airlock_redis_clickhouse_grafana(stack):
    services = stack["services"]
    assert set(services) >= {"airlock", "redis", "clickhouse", "grafana"}
    for name in ("redis", "clickhouse"):
        assert services[name].get("healthcheck"), name
        assert services["airlock"]["depends_on"][name]["condition"] == "service_healthy"
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
    volumes = {v.split(":")[1] for v in services["airlock"]["volumes"]}
    assert "/var/lib/airlock" in volumes                         # CA + WAL survive restarts
    assert set(stack["volumes"]) >= {"airlock-data", "redis-data", "clickhouse-data", "grafana-data"}


def _mount(service: dict, target: str) -> Path:
    for v in service["volumes"]:
        src, dst = v.split(":")[:2]
        if dst == target:
            return Path(src)
    raise AssertionError(f"nothing mounted at {target}")


def test_airlock_config_points_at_the_compose_services(stack, monkeypatch):
    services = stack["services"]
    airlock = services["airlock"]
    cmd = airlock["command"]
    cfg_path = _mount(airlock, cmd[cmd.index("-c") + 1])
    assert cfg_path == ROOT / "deploy" / "airlock.yaml"
    # Airlock sees exactly the environment compose gives its container
    for k in list(os.environ):
        monkeypatch.delenv(k)
    for k, v in airlock["environment"].items():
        monkeypatch.setenv(k, v)
    cfg = airlock_config.load(cfg_path)

    redis = urlsplit(cfg.redis)
    assert (redis.scheme, redis.hostname, redis.port) == ("redis", "redis", 6379)
    assert redis.password == services["redis"]["environment"]["REDIS_PASSWORD"]
    assert "--requirepass" in " ".join(services["redis"]["command"])

    ch = urlsplit(cfg.clickhouse_dsn())
    ch_env = services["clickhouse"]["environment"]
    assert (ch.scheme, ch.hostname, ch.port) == ("http", "clickhouse", 8123)
    assert ch.path.strip("/") == ch_env["CLICKHOUSE_DB"]
    assert (ch.username, ch.password) == (ch_env["CLICKHOUSE_USER"], ch_env["CLICKHOUSE_PASSWORD"])

    # every listener is reachable from outside the container and published
    published = {p.split(":")[-1].split("/")[0] for p in airlock["ports"]}
    for key in ("gateway", "proxy", "admin"):
        host, port = airlock_config.split_hostport(cfg.listen[key], key)
        assert host == "0.0.0.0" and str(port) in published
    assert cfg.admin_token() == SECRETS["AIRLOCK_ADMIN_TOKEN"]
    assert str(cfg.path(cfg.data_dir)) == "/var/lib/airlock"
    assert cfg.policies == ["/etc/airlock/policies"]
    assert _mount(airlock, "/etc/airlock/policies") == ROOT / "policies"


def test_grafana_reads_the_stack_clickhouse_and_the_dashboards(stack):
    services = stack["services"]
    grafana = services["grafana"]
    prov = _mount(grafana, "/etc/grafana/provisioning")
    assert prov == ROOT / "deploy" / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "clickhouse.yaml").read_text())["datasources"][0]
    assert ds["type"] == "grafana-clickhouse-datasource"
    assert "grafana-clickhouse-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"]
    ch_env = services["clickhouse"]["environment"]
    assert (ds["jsonData"]["host"], ds["jsonData"]["port"]) == ("clickhouse", 8123)
    assert ds["jsonData"]["defaultDatabase"] == ch_env["CLICKHOUSE_DB"]
    # the password is an env reference Grafana expands, and both containers get the same value
    var = ds["secureJsonData"]["password"].lstrip("$").strip("{}")
    assert grafana["environment"][var] == ch_env[var]
    init = _mount(services["clickhouse"], "/docker-entrypoint-initdb.d")
    script = (init / "10-grafana-reader.sh").read_text()
    assert f"CREATE USER IF NOT EXISTS {ds['jsonData']['username']}" in script and "GRANT SELECT" in script

    dashboards = yaml.safe_load((prov / "dashboards" / "airlock.yaml").read_text())["providers"][0]
    src = _mount(grafana, dashboards["options"]["path"])
    assert src == ROOT / "schema" / "dashboards"
    boards = sorted(src.glob("*.json"))
    assert boards, f"no dashboards in {src}"
    assert ds.get("isDefault") is True                           # picked by the dashboards' variable
    for f in boards:
        board = json.loads(f.read_text())
        variables = {v["name"]: v for v in board.get("templating", {}).get("list", [])}
        uids = set(re.findall(r'"datasource"\s*:\s*\{[^}]*"uid"\s*:\s*"([^"]+)"', f.read_text()))
        for uid in uids - {ds["uid"]}:
            name = uid.strip("${}")
            assert variables.get(name, {}).get("type") == "datasource", f"{f.name}: unknown datasource {uid}"
            assert variables[name]["query"] == ds["type"], f"{f.name}: variable {name} is not ClickHouse"


def test_dockerfile_runs_as_non_root_with_a_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    health = re.search(r"^HEALTHCHECK .*\n(?:.*\\\n)*.*CMD (.+)$", text, re.M)
    assert health and "/healthz" in health.group(1)
    assert "/healthz" in (ROOT / "proxy" / "admin" / "app.py").read_text()   # the path the admin API serves
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git", "var"} <= set(ignore)


def _dockerignored(rel: str, patterns: list[str]) -> bool:
    import fnmatch
    parts = rel.split("/")
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(parts[0], p) for p in patterns
               if p and not p.startswith("#") and not p.startswith("**"))


def test_dockerfile_copies_only_files_that_exist_in_the_build_context():
    text = (ROOT / "Dockerfile").read_text()
    ignore = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    copies = re.findall(r"^COPY\s+(?!--from)(.+?)\s+\S+$", text, re.M)
    assert copies
    for line in copies:
        for src in line.split():
            assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
            assert not _dockerignored(src, ignore), f"Dockerfile copies {src}, but .dockerignore excludes it"
    # the config baked in as the default CMD is a valid Airlock config with embedded stores
    cmd = re.findall(r"^CMD\s+(\[.*\])$", text, re.M)[-1]
    assert json.loads(cmd) == ["run", "-c", "/etc/airlock/airlock.yaml"]
    assert "cp deploy/airlock-standalone.yaml /etc/airlock/airlock.yaml" in text
    cfg = airlock_config.load(ROOT / "deploy" / "airlock-standalone.yaml")
    assert cfg.redis is None and cfg.clickhouse_dsn() == "chdb:///var/lib/airlock/audit"
    assert str(cfg.path(cfg.data_dir)) == "/var/lib/airlock" and "VOLUME [\"/var/lib/airlock\"]" in text
    # every listener the image exposes is one the config opens
    exposed = set(re.findall(r"^EXPOSE\s+(.+)$", text, re.M)[0].split())
    for key in ("gateway", "proxy", "admin"):
        assert str(airlock_config.split_hostport(cfg.listen[key], key)[1]) in exposed
    assert "8082" in exposed                                    # the sidecar's default transparent port
