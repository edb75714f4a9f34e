"""airlock.yaml loading: env expansion, strict keys, clear errors, exit code 2 from the CLI."""
from __future__ import annotations

import pytest

from proxy import config
from tests.harness import run_cli


def test_defaults_and_env_expansion(tmp_path, monkeypatch):
    monkeypatch.setenv("GH_TOKEN", "ghp_x")
    p = tmp_path / "airlock.yaml"
    p.write_text("""
listen: {gateway: "127.0.0.1:9001"}
mcp_servers:
  github: {url: "https://api.githubcopilot.com/mcp/", headers: {Authorization: "Bearer ${GH_TOKEN}"}}
audit: {clickhouse: "chdb://${DATA:-./data}/audit"}
""")
    cfg = config.load(p)
    assert cfg.listen["gateway"] == "127.0.0.1:9001"
    assert cfg.listen["admin"] == "127.0.0.1:8788"           # default kept
    assert cfg.mcp_servers["github"].headers["Authorization"] == "Bearer ghp_x"
    assert cfg.clickhouse_dsn() == f"chdb://{tmp_path / 'data' / 'audit'}"
    assert cfg.providers["openai"].base_url == "https://api.openai.com/v1"
    assert cfg.providers["anthropic"].kind == "anthropic"


@pytest.mark.parametrize("text, key", [
    ("listen: {gatway: '1.2.3.4:1'}", "listen.gatway"),
    ("listen: {gateway: 'nope'}", "listen.gateway"),
    ("store: {redis: 'http://x'}", "store.redis"),
    ("providers: {openai: {base_url: 'ftp://x'}}", "providers.openai.base_url"),
    ("mcp_servers: {gh: {url: 'https://x', header: {}}}", "mcp_servers.gh.header"),
    ("limits: {max_body_bytes: -1}", "limits.max_body_bytes"),
    ("surprise: 1", "surprise"),
    ("mcp_servers: {gh: {url: 'https://x/${NOPE_NOT_SET}'}}", "mcp_servers.gh.url"),
])
def test_bad_values_name_file_and_key(tmp_path, text, key):
    p = tmp_path / "airlock.yaml"
    p.write_text(text)
    with pytest.raises(config.ConfigError) as e:
        config.load(p)
    assert str(p) in str(e.value) and key in str(e.value)


def test_flags_override(tmp_path):
    cfg = config.load(None, {"gateway": "127.0.0.1:7777", "proxy": None})
    assert cfg.listen["gateway"] == "127.0.0.1:7777"


def test_cli_invalid_yaml_exits_2_with_a_clear_message(tmp_path):
    p = tmp_path / "airlock.yaml"
    p.write_text("listen: [unclosed\n")
    r = run_cli("run", "-c", str(p), cwd=tmp_path)
    assert r.returncode == 2
    assert "invalid YAML" in r.stderr and str(p) in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_unknown_key_exits_2(tmp_path):
    p = tmp_path / "airlock.yaml"
    p.write_text("listen: {gatway: '127.0.0.1:1'}\n")
    r = run_cli("run", "-c", str(p), cwd=tmp_path)
    assert r.returncode == 2 and "listen.gatway: unknown key" in r.stderr
