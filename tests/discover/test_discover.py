"""discover finds exactly what the fixture homes hold, and never prints a secret value."""
from __future__ import annotations

import json

from proxy.discover.discover import discover
from tests.harness import run_cli

EXPECTED = {   # agent -> {server: (transport, disabled, scope)}
    "claude-code": {"github": ("http", False, "user"), "filesystem": ("stdio", False, "user"),
                    "linear": ("sse", False, "user"), "postgres": ("stdio", True, "local"),
                    "sentry": ("http", False, "project"), "puppeteer": ("stdio", True, "project")},
    "claude-desktop": {"filesystem": ("stdio", False, "user"), "atlassian": ("stdio", False, "user"),
                       "brave-search": ("stdio", False, "user")},
    "codex": {"context7": ("stdio", False, "user"), "figma": ("http", False, "user"),
              "docs": ("http", True, "user"), "playwright": ("stdio", False, "project")},
    "cursor": {"userjot": ("http", False, "user"), "notion": ("sse", False, "user"), "git": ("stdio", False, "user"),
               "supabase": ("stdio", False, "project")},
    "gemini": {"github": ("http", False, "user"), "stripe": ("sse", False, "user"), "sqlite": ("stdio", False, "user"),
               "Memory": ("stdio", True, "user"), "gcloud": ("stdio", False, "extension")},
    "opencode": {"context7": ("http", False, "user"), "jira": ("stdio", True, "user"),
                 "everything": ("stdio", False, "legacy")},
    "windsurf": {"github-remote": ("http", False, "user"), "playwright": ("stdio", True, "user"),
                 "deepwiki": ("http", False, "next")},
    "openclaw": {"fs": ("stdio", False, "user"), "linear": ("http", False, "user"),
                 "legacy_events": ("sse", True, "user"), "weather": ("stdio", False, "legacy")},
    "hermes": {"github": ("http", False, "user"), "time": ("stdio", False, "user"), "browser": ("stdio", True, "user")},
    "vscode": {"perplexity": ("stdio", False, "user"), "github": ("http", False, "user"),
               "legacy-sse": ("sse", False, "user"), "fetch": ("stdio", False, "legacy"),
               "azure": ("stdio", False, "project")},
    "cline": {"github.com/modelcontextprotocol/servers/tree/main/src/git": ("stdio", False, "user"),
              "remote-docs": ("http", True, "user")},
    "roo": {"events": ("sse", False, "user"), "filesystem": ("stdio", False, "project")},
    "zed": {"mcp-server-time": ("stdio", False, "user"), "legacy-github": ("stdio", False, "user"),
            "remote-linear": ("http", False, "user")},
}
MODELS = {
    "claude-code": {"provider": "anthropic", "base_url": "https://api.anthropic.com"},
    "claude-desktop": {"provider": "anthropic", "base_url": None},
    "codex": {"provider": "litellm", "base_url": "https://llm.internal.example.com/v1"},
    "cursor": {"provider": None, "base_url": None},
    "gemini": {"provider": "gemini", "base_url": "https://gemini-proxy.internal.example.com"},
    "opencode": {"provider": "anthropic", "base_url": "https://api.anthropic.com/v1"},
    "windsurf": {"provider": None, "base_url": None},
    "openclaw": {"provider": "openrouter", "base_url": "https://openrouter.ai/api/v1"},
    "hermes": {"provider": "custom", "base_url": "https://inference.example.com/v1"},
    "vscode": {"provider": None, "base_url": None},
    "cline": {"provider": None, "base_url": None},
    "roo": {"provider": None, "base_url": None},
    "zed": {"provider": "anthropic", "base_url": "https://api.anthropic.com"},
}
SECRETS = ["lin_api_9f8e7d6c", "sk-ant-api03", "rk_live_literal", "BSA-literal", "c7-literal", "bb_live_literal",
           "sk-ant-oc-literal", "AIzaSy-literal", "ghp_literal_zed"]


def test_finds_every_agent_and_exactly_its_servers(tree):
    home, project = tree
    reports = {r.agent: r for r in discover(home, project)}
    assert set(reports) == set(EXPECTED)
    for agent, servers in EXPECTED.items():
        got = {s.name: (s.transport, s.disabled, s.scope) for s in reports[agent].mcp_servers}
        assert got == servers, agent
        assert reports[agent].model == MODELS[agent], agent
        assert not reports[agent].warnings


def test_details_commands_urls_headers_env_and_files(tree):
    home, project = tree
    r = {x.agent: {s.name: s for s in x.mcp_servers} for x in discover(home, project)}
    pg = r["claude-code"]["postgres"]
    assert pg.command == "uvx" and pg.args == ["mcp-server-postgres", "--dsn", "${DATABASE_URL:-postgresql://localhost/dev}"]
    assert pg.source_file == str(home / ".claude.json") and pg.key_path == ["projects", str(project), "mcpServers", "postgres"]
    assert r["codex"]["figma"].headers == {"X-Figma-Region": "us-east-1", "Authorization": "Bearer ${FIGMA_OAUTH_TOKEN}"}
    assert r["codex"]["docs"].headers == {"X-Api-Key": "${DOCS_API_KEY}"}
    assert r["codex"]["playwright"].env == {"DISPLAY": ""}
    assert r["gemini"]["github"].url == "https://api.githubcopilot.com/mcp/"          # legacy httpUrl
    oc = r["opencode"]["jira"]
    assert (oc.command, oc.args, list(oc.env)) == ("bunx", ["jira-mcp", "--site", "example.atlassian.net"], ["JIRA_TOKEN"])
    assert r["windsurf"]["github-remote"].url == "https://api.githubcopilot.com/mcp/"  # serverUrl
    assert r["openclaw"]["weather"].source_file == str(home / ".clawdbot" / "clawdbot.json")
    assert r["vscode"]["fetch"].key_path == ["mcp", "servers", "fetch"]


def test_json_contract_from_the_cli_has_names_never_values(tree):
    home, project = tree
    p = run_cli("agents", "discover", "--home", str(home), "--project", str(project), "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert [a["agent"] for a in out] == list(EXPECTED)
    for a in out:
        assert set(a) >= {"agent", "config_files", "mcp_servers", "model"}
        assert set(a["model"]) == {"provider", "base_url"}
        for s in a["mcp_servers"]:
            assert set(s) >= {"name", "transport", "command", "args", "url", "disabled", "source_file"}
            assert s["transport"] in ("stdio", "http", "sse")
            assert isinstance(s["headers"], list) and isinstance(s["env"], list)
    claude = out[0]
    assert claude["config_files"] == [str(home / ".claude.json"), str(home / ".claude" / "settings.json"),
                                      str(project / ".mcp.json"), str(project / ".claude" / "settings.local.json")]
    linear = next(s for s in claude["mcp_servers"] if s["name"] == "linear")
    assert linear["headers"] == ["Authorization", "X-Client"]
    for secret in SECRETS:
        assert secret not in p.stdout
    table = run_cli("agents", "discover", "--home", str(home), "--project", str(project))
    assert table.returncode == 0 and "postgres" in table.stdout and "filesystem" in table.stdout
    for secret in SECRETS:
        assert secret not in table.stdout + table.stderr


def test_empty_home_unknown_agent_and_broken_file(tmp_path):
    assert discover(tmp_path) == []
    p = run_cli("agents", "discover", "--home", str(tmp_path), "--agent", "nope")
    assert p.returncode != 0 and "unknown agent nope" in p.stderr and "Traceback" not in p.stderr
    (tmp_path / ".cursor").mkdir()
    (tmp_path / ".cursor" / "mcp.json").write_text('{"mcpServers": {"x": ')
    [r] = discover(tmp_path)
    assert r.agent == "cursor" and r.mcp_servers == [] and "not valid JSONC" in r.warnings[0]
    p = run_cli("agents", "discover", "--home", str(tmp_path / "missing"))
    assert p.returncode != 0 and "not a directory" in p.stderr


def test_relocated_config_dirs_are_honoured_for_the_real_home_only(tmp_path):
    home = tmp_path / "home"
    codex_home, claude_dir = tmp_path / "elsewhere" / "codex", tmp_path / "elsewhere" / "claude"
    codex_home.mkdir(parents=True)
    claude_dir.mkdir(parents=True)
    home.mkdir()
    (codex_home / "config.toml").write_text('[mcp_servers.moved]\ncommand = "uvx"\nargs = ["moved-mcp"]\n')
    (claude_dir / ".claude.json").write_text('{"mcpServers": {"cc": {"type": "http", "url": "https://x.example/mcp"}}}')
    env = {"HOME": str(home), "CODEX_HOME": str(codex_home), "CLAUDE_CONFIG_DIR": str(claude_dir)}
    p = run_cli("agents", "discover", "--json", env=env)                    # no --home: the real (HOME) one
    assert p.returncode == 0, p.stderr
    got = {a["agent"]: a for a in json.loads(p.stdout)}
    assert got["codex"]["config_files"] == [str(codex_home / "config.toml")]
    assert [s["name"] for s in got["codex"]["mcp_servers"]] == ["moved"]
    assert got["claude-code"]["config_files"] == [str(claude_dir / ".claude.json")]
    p = run_cli("agents", "discover", "--json", "--home", str(tmp_path / "elsewhere"), env=env)
    assert json.loads(p.stdout) == []                                       # an explicit tree is taken as is
