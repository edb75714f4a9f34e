"""onboard rewrites every fixture agent losslessly, twice = once, restore = byte-identical.

Tokens are minted by a real ``airlock run`` through its admin API (``POST /v1/keys``)."""
from __future__ import annotations

import getpass
import json
import tomllib
from pathlib import Path

import json5
import pytest
import yaml

from proxy.config import load as load_airlock_config
from tests.discover.conftest import snapshot
from tests.harness import Airlock, run_cli

AIRLOCK_YAML = "# Airlock config (hand-written)\nlisten:\n  gateway: {gw}   # agents use this\n  admin: {admin}\n"


@pytest.fixture(scope="module")
def airlock():
    with Airlock({}) as a:
        yield a


@pytest.fixture
def cfg(tmp_path, airlock):
    p = tmp_path / "airlock.yaml"
    p.write_text(AIRLOCK_YAML.format(gw=airlock.config["listen"]["gateway"], admin=airlock.config["listen"]["admin"]))
    return p


def onboard(airlock, home, project, cfg, *extra):
    p = run_cli("agents", "onboard", "--home", str(home), "--project", str(project), "-c", str(cfg), *extra,
                env=airlock.cli_env())
    assert p.returncode == 0, p.stderr
    return p


def keys(airlock) -> list[dict]:
    return airlock.admin("GET", "/v1/keys").json()


def test_onboard_then_restore_is_byte_identical(tree, cfg, airlock):
    home, project = tree
    root = home.parent
    before = snapshot(root)
    p = onboard(airlock, home, project, cfg, "--yes", "--json")
    out = json.loads(p.stdout)
    assert {a["agent"] for a in out["agents"]} == {"claude-code", "claude-desktop", "codex", "cursor", "gemini",
                                                    "opencode", "windsurf", "openclaw", "hermes", "vscode",
                                                    "cline", "roo", "zed"}
    after = snapshot(root)
    changed = {k for k in before if before[k] != after.get(k)}
    assert len(changed) >= 18 and "airlock.yaml" in changed
    assert "home/.claude/settings.json" in changed and "home/.gemini/.env" not in changed
    created = set(after) - set(before)
    assert created == {"home/.cursor/hooks.json"}                  # Cursor's hook file did not exist
    manifest = json.loads((home / ".airlock" / "backups" / "manifest.json").read_text())
    assert set(manifest["files"]) == {str(root / k) for k in changed | created}
    for path, ent in manifest["files"].items():                  # every backup holds the original bytes
        rel = str(Path(path).relative_to(root))
        if rel in created:
            assert ent["backup"] is None
        else:
            assert Path(ent["backup"]).read_bytes() == before[rel]

    r = run_cli("agents", "restore", "--home", str(home), "--project", str(project), "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len([x for x in rows if "file" in x]) == len(changed) + len(created)
    assert snapshot(root) == before
    # no admin API reachable from here: the tokens onboard minted are reported, still valid, by id only
    tokens = [x for x in rows if "token_id" in x]
    assert tokens and all("still valid: run 'airlock keys revoke" in x["action"] for x in tokens)
    assert "alk_" not in r.stdout


def test_onboard_twice_is_the_same_as_once(tree, cfg, airlock):
    home, project = tree
    onboard(airlock, home, project, cfg, "--yes")
    once = snapshot(home.parent)
    manifest = (home / ".airlock" / "backups" / "manifest.json").read_bytes()
    n_keys = len(keys(airlock))
    p = onboard(airlock, home, project, cfg, "--yes", "--json")
    out = json.loads(p.stdout)
    assert all(a["changed_files"] == [] for a in out["agents"])
    assert {a["token"] for a in out["agents"]} <= {"reused", "none"}
    assert snapshot(home.parent) == once
    assert (home / ".airlock" / "backups" / "manifest.json").read_bytes() == manifest
    assert len(keys(airlock)) == n_keys                            # nothing minted the second time
    # restore still goes back to the state before the FIRST onboarding
    run_cli("agents", "restore", "--home", str(home), "--project", str(project))
    fresh = snapshot(home.parent)
    assert b"api.githubcopilot.com" in fresh["home/.claude.json"] and b"/mcp/github" not in fresh["home/.claude.json"]


def test_dry_run_prints_diffs_and_touches_nothing(tree, cfg, airlock):
    home, project = tree
    before = snapshot(home.parent)
    n_keys = len(keys(airlock))
    p = onboard(airlock, home, project, cfg, "--dry-run")
    assert f"--- {home / '.claude.json'}" in p.stdout and f"+++ {home / '.claude.json'}" in p.stdout
    assert '+      "url": "' + airlock.gateway_url + '/mcp/github",' in p.stdout
    assert "airlock-dry-run-token" in p.stdout and "/dev/null" not in p.stdout.split(str(home / ".claude.json"))[0]
    assert '-        "Authorization": "Bearer ${GITHUB_PAT}"' in p.stdout          # env references stay readable
    for secret in ("lin_api_9f8e7d6c", "sk-ant-api03", "rk_live_literal", "BSA-literal", "c7-literal",
                   "bb_live_literal", "sk-ant-oc-literal"):
        assert secret not in p.stdout, secret                              # literal secrets are masked
    assert '-    "ANTHROPIC_API_KEY": "<redacted>"' in p.stdout
    assert snapshot(home.parent) == before and not (home / ".airlock").exists()
    assert len(keys(airlock)) == n_keys


def test_refuses_without_yes_when_not_a_terminal(tree, cfg, airlock):
    home, project = tree
    before = snapshot(home.parent)
    p = run_cli("agents", "onboard", "--home", str(home), "--project", str(project), "-c", str(cfg),
                env=airlock.cli_env(), input="")
    assert p.returncode != 0 and "--yes" in p.stderr and "Traceback" not in p.stderr
    assert snapshot(home.parent) == before
    p = run_cli("agents", "onboard", "--home", str(home), "--agent", "nope", "--yes", env=airlock.cli_env())
    assert p.returncode != 0 and "unknown agent nope" in p.stderr
    p = run_cli("agents", "onboard", "--home", str(home), "--yes", "-c", str(cfg.parent / "missing.yaml"),
                env=airlock.cli_env())
    assert p.returncode == 2 and "no Airlock config at" in p.stderr and "-c" in p.stderr
    p = run_cli("agents", "onboard", "--home", str(home), "--yes", "-c", str(cfg), "--gateway-url", "localhost:1",
                env=airlock.cli_env())
    assert p.returncode != 0 and "must be an http(s) URL" in p.stderr
    assert snapshot(home.parent) == before


def test_rewrites_are_correct_and_lossless_per_format(tree, cfg, airlock):
    home, project = tree
    gw = airlock.gateway_url
    p = onboard(airlock, home, project, cfg, "--yes")
    tokens = {}

    # Claude Code: strict JSON, entries rewritten, model env + hook, state file otherwise untouched
    state = json.loads((home / ".claude.json").read_text())
    gh = state["mcpServers"]["github"]
    assert gh["url"] == f"{gw}/mcp/github" and gh["type"] == "http"
    tokens["claude-code"] = gh["headers"]["Authorization"].removeprefix("Bearer ")
    fs = state["mcpServers"]["filesystem"]
    assert fs["command"].endswith("airlock") and fs["args"][fs["args"].index("mcp"):] == [
        "mcp", "wrap", "--server", "filesystem", "--agent", "claude-code", "--account", getpass.getuser(), "--", "npx", "-y", "@modelcontextprotocol/server-filesystem",
        "/home/dev/code"]
    assert fs["args"][:2] == ["-c", str(cfg)]
    pg = state["projects"][str(project)]["mcpServers"]["postgres"]
    assert pg["env"] == {"PGPASSWORD": "${PGPASSWORD}"} and pg["args"][-3:] == [
        "mcp-server-postgres", "--dsn", "${DATABASE_URL:-postgresql://localhost/dev}"]
    assert state["oauthAccount"]["emailAddress"] == "dev@example.com" and state["numStartups"] == 184
    settings = json.loads((home / ".claude" / "settings.json").read_text())
    assert settings["env"] == {"DISABLE_TELEMETRY": "1", "ANTHROPIC_BASE_URL": f"{gw}/anthropic",
                               "ANTHROPIC_AUTH_TOKEN": tokens["claude-code"], "AIRLOCK_TOKEN": tokens["claude-code"]}
    assert settings["hooks"]["PostToolUse"][0]["matcher"] == "Edit|Write"
    [hook] = settings["hooks"]["PreToolUse"]
    assert hook["hooks"][0]["command"].endswith(f"-c {cfg} --token {tokens['claude-code']} hook claude-code")
    mcp_json = json.loads((project / ".mcp.json").read_text())
    sentry = mcp_json["mcpServers"]["sentry"]          # committed project file: a reference, not the token
    assert sentry["url"] == f"{gw}/mcp/sentry" and sentry["headers"] == {"Authorization": "Bearer ${AIRLOCK_TOKEN}"}

    # Codex: TOML comments and unrelated tables survive; model provider added
    text = (home / ".codex" / "config.toml").read_text()
    for line in ("# Codex CLI configuration", "# --- MCP servers ---", "# turned off while the docs team migrates",
                 '[projects."/home/dev/code/airlock"]', "[mcp_servers.context7.env]"):
        assert line in text
    codex = tomllib.loads(text)
    assert codex["model_provider"] == "airlock" and codex["model_providers"]["litellm"]["env_key"] == "LITELLM_API_KEY"
    prov = codex["model_providers"]["airlock"]
    assert prov["base_url"] == f"{gw}/openai/v1" and prov["wire_api"] == "responses"
    tokens["codex"] = prov["http_headers"]["Authorization"].removeprefix("Bearer ")
    figma = codex["mcp_servers"]["figma"]
    assert figma == {"url": f"{gw}/mcp/figma", "http_headers": {"Authorization": f"Bearer {tokens['codex']}"}}
    assert codex["mcp_servers"]["docs"]["enabled"] is False
    assert codex["mcp_servers"]["context7"]["env"] == {"CONTEXT7_API_KEY": "c7-literal-0000"}

    # OpenCode: JSONC comments and trailing commas survive
    text = (home / ".config" / "opencode" / "opencode.jsonc").read_text()
    assert "// default model for new sessions" in text and "/* local servers */" in text and "},\n  },\n}" in text
    oc = json5.loads(text)
    assert oc["mcp"]["jira"]["command"][1:] == ["-c", str(cfg), "mcp", "wrap", "--server", "jira", "--agent", "opencode",
                                                "--account", getpass.getuser(), "--", "bunx", "jira-mcp", "--site",
                                                "example.atlassian.net"]
    assert oc["mcp"]["jira"]["enabled"] is False and oc["mcp"]["jira"]["environment"] == {"JIRA_TOKEN": "{env:JIRA_TOKEN}"}
    assert oc["provider"]["anthropic"]["options"]["baseURL"] == f"{gw}/anthropic/v1"
    assert oc["provider"]["ollama"]["options"]["baseURL"] == f"{gw}/openai/v1"
    tokens["opencode"] = oc["provider"]["anthropic"]["options"]["apiKey"]

    # OpenClaw: JSON5 comments, unquoted keys, single quotes elsewhere survive
    text = (home / ".openclaw" / "openclaw.json").read_text()
    assert text.startswith("// OpenClaw gateway config (JSON5)") and "workspace: '~/.openclaw/workspace'," in text
    assert "// local filesystem access for the agent" in text and "// no transport => SSE" in text
    claw = json5.loads(text)
    assert claw["mcp"]["servers"]["linear"]["url"].startswith(f"{gw}/mcp/")
    assert claw["mcp"]["servers"]["legacy_events"]["transport"] == "streamable-http"
    assert claw["models"]["providers"]["anthropic"]["baseUrl"] == f"{gw}/anthropic"
    assert claw["channels"] == {"telegram": {"enabled": True, "botToken": "${TELEGRAM_BOT_TOKEN}"}}

    # Hermes: YAML comments and flow style survive
    text = (home / ".hermes" / "config.yaml").read_text()
    assert "# ── MCP servers ─" in text and "# costs money; enable per task" in text and "# any OpenAI-compatible" in text
    herm = yaml.safe_load(text)
    assert herm["model"]["base_url"] == f"{gw}/openai/v1" and herm["terminal"] == {"backend": "local", "timeout": 180}
    assert herm["mcp_servers"]["browser"]["args"][-3:] == ["npx", "-y", "@browserbasehq/mcp"]
    assert "args: [-c," in text                                     # flow list stayed a flow list

    # Gemini: comments survive, legacy httpUrl replaced by url + type
    text = (home / ".gemini" / "settings.json").read_text()
    assert "// Gemini CLI user settings" in text and "/* MCP servers */" in text
    gem = json5.loads(text)["mcpServers"]["github"]
    assert "httpUrl" not in gem and gem["url"] == f"{gw}/mcp/github" and gem["type"] == "http" and gem["timeout"] == 30000

    assert json5.loads(text)["hooks"]["BeforeTool"][0]["hooks"][0]["command"].endswith(" hook gemini")
    cursor_hooks = json.loads((home / ".cursor" / "hooks.json").read_text())
    assert cursor_hooks["version"] == 1
    assert cursor_hooks["hooks"]["beforeShellExecution"][0]["command"].endswith(" hook cursor")
    for hook_cmd in (cursor_hooks["hooks"]["beforeShellExecution"][0]["command"],
                     json5.loads(text)["hooks"]["BeforeTool"][0]["hooks"][0]["command"]):
        assert f"-c {cfg} --token alk_" in hook_cmd             # the agent's own token, not the admin token

    # VS Code: inputs kept, legacy settings.json entry wrapped
    vs = json5.loads((home / ".config" / "Code" / "User" / "mcp.json").read_text())
    assert vs["inputs"][0]["id"] == "perplexity-key" and vs["servers"]["legacy-sse"]["type"] == "http"
    assert json5.loads((home / ".config" / "Code" / "User" / "settings.json").read_text())["editor.fontSize"] == 14

    # Windsurf keeps its serverUrl key
    ws = json.loads((home / ".codeium" / "windsurf" / "mcp_config.json").read_text())["mcpServers"]
    assert ws["github-remote"]["serverUrl"].startswith(f"{gw}/mcp/") and ws["playwright"]["disabled"] is True

    # Zed: JSONC with trailing commas, legacy {"command": {"path", "args"}} shape wrapped in place
    text = (home / ".config" / "zed" / "settings.json").read_text()
    assert text.startswith("// Zed settings\n//\n") and '"ui_font_size": 16,' in text
    zed = json5.loads(text)["context_servers"]
    assert zed["legacy-github"]["command"]["path"].endswith("airlock")
    args = zed["legacy-github"]["command"]["args"]
    assert args[args.index("--"):] == ["--", "docker", "run", "-i", "--rm", "-e", "GITHUB_PERSONAL_ACCESS_TOKEN",
                                       "ghcr.io/github/github-mcp-server"]
    assert zed["postgres-context-server"] == {"source": "extension", "settings": {"database_url": "postgresql://localhost/dev"}}
    # Cline / Roo keep their own transport words; one Airlock entry per upstream URL
    cline = json.loads((home / ".config/Code/User/globalStorage/saoudrizwan.claude-dev/settings/cline_mcp_settings.json")
                       .read_text())["mcpServers"]
    assert cline["remote-docs"]["type"] == "streamableHttp" and cline["remote-docs"]["url"] == f"{gw}/mcp/docs"
    args = cline["github.com/modelcontextprotocol/servers/tree/main/src/git"]["args"]
    assert args[args.index("--server") + 1] == "github.com-modelcontextprotocol-servers-tree-main-src-git"
    roo = json.loads((home / ".config/Code/User/globalStorage/rooveterinaryinc.roo-cline/settings/mcp_settings.json")
                     .read_text())["mcpServers"]
    assert roo["events"]["type"] == "streamable-http" and roo["events"]["url"] == f"{gw}/mcp/legacy_events"

    # one minted token per agent, each known to Airlock under the agent's name; never printed
    assert len(set(tokens.values())) == len(tokens)
    minted = {k["agent"] for k in keys(airlock)}
    assert {"claude-code", "codex", "opencode", "openclaw", "hermes", "cursor"} <= minted
    for t in tokens.values():
        assert t not in p.stdout and t not in p.stderr

    # Airlock's own config: comments kept, env references carried, literal secrets left out
    text = cfg.read_text()
    assert "# Airlock config (hand-written)" in text and "# agents use this" in text
    env = {"GITHUB_PAT": "x", "SENTRY_AUTH_TOKEN": "x", "FIGMA_OAUTH_TOKEN": "x", "DOCS_API_KEY": "x",
           "USERJOT_API_TOKEN": "x", "CONTEXT7_API_KEY": "x", "LINEAR_API_KEY": "x"}
    raw = yaml.safe_load(text)["mcp_servers"]
    assert raw["github"] == {"url": "https://api.githubcopilot.com/mcp/", "headers": {"Authorization": "Bearer ${GITHUB_PAT}"}}
    assert raw["linear"] == {"url": "https://mcp.linear.app/sse", "headers": {"X-Client": "claude-code"}}
    assert raw["context7"]["headers"] == {"CONTEXT7_API_KEY": "${CONTEXT7_API_KEY}"}      # {env:X} -> ${X}
    assert raw["userjot"]["headers"] == {"Authorization": "Bearer ${USERJOT_API_TOKEN}"}  # ${env:X} -> ${X}
    assert "lin_api_" not in text and "rk_live" not in text
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    try:
        loaded = load_airlock_config(cfg)
    finally:
        mp.undo()
    assert loaded.mcp_servers["github"].headers == {"Authorization": "Bearer x"}
    assert "literal secret" in p.stderr and "--move-secrets" in p.stderr


def test_move_secrets_copies_literal_headers_only_when_asked(tree, cfg, airlock):
    home, project = tree
    onboard(airlock, home, project, cfg, "--yes", "--agent", "claude-code", "--move-secrets")
    raw = yaml.safe_load(cfg.read_text())["mcp_servers"]
    assert raw["linear"]["headers"]["Authorization"] == "Bearer lin_api_9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c"
    assert set(raw) == {"github", "linear", "sentry"}            # only the chosen agent was onboarded


def test_restore_one_agent(tree, cfg, airlock):
    home, project = tree
    before = snapshot(home.parent)
    onboard(airlock, home, project, cfg, "--yes", "--agent", "codex", "--agent", "hermes")
    r = run_cli("agents", "restore", "--home", str(home), "--agent", "hermes", "--json")
    assert [x["agent"] for x in json.loads(r.stdout) if "file" in x] == ["hermes"]
    now = snapshot(home.parent)
    assert now["home/.hermes/config.yaml"] == before["home/.hermes/config.yaml"]
    assert now["home/.codex/config.toml"] != before["home/.codex/config.toml"]
    run_cli("agents", "restore", "--home", str(home))
    assert snapshot(home.parent) == before
    r = run_cli("agents", "restore", "--home", str(home))
    assert r.returncode == 0 and "nothing to restore" in r.stdout


def test_unreachable_airlock_fails_before_writing_anything(tree, cfg, airlock):
    from tests.harness import free_port
    home, project = tree
    before = snapshot(home.parent)
    env = {**airlock.cli_env(), "AIRLOCK_ADMIN_URL": f"http://127.0.0.1:{free_port()}"}
    p = run_cli("agents", "onboard", "--home", str(home), "--project", str(project), "-c", str(cfg), "--yes", env=env)
    assert p.returncode != 0 and "cannot reach Airlock's admin API" in p.stderr and "Traceback" not in p.stderr
    assert snapshot(home.parent) == before and not (home / ".airlock").exists()


def test_symlinked_config_stays_a_symlink(tree, cfg, airlock, tmp_path):
    home, project = tree
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    real = dotfiles / "config.yaml"
    (home / ".hermes" / "config.yaml").rename(real)
    (home / ".hermes" / "config.yaml").symlink_to(real)
    original = real.read_bytes()
    onboard(airlock, home, project, cfg, "--yes", "--agent", "hermes")
    assert (home / ".hermes" / "config.yaml").is_symlink() and b"/mcp/github" in real.read_bytes()
    run_cli("agents", "restore", "--home", str(home))
    assert (home / ".hermes" / "config.yaml").is_symlink() and real.read_bytes() == original


def test_unparseable_file_is_skipped_with_a_warning_and_left_alone(tree, cfg, airlock):
    home, project = tree
    broken = home / ".codex" / "config.toml"
    broken.write_text('model = "o3"\n[mcp_servers.x\ncommand = "npx"\n')
    original = broken.read_bytes()
    p = onboard(airlock, home, project, cfg, "--yes", "--agent", "codex", "--json")
    [codex] = json.loads(p.stdout)["agents"]
    assert any("not valid TOML" in w and str(broken) in w for w in codex["warnings"])
    assert broken.read_bytes() == original
    assert codex["changed_files"] == [str(project / ".codex" / "config.toml")]   # the readable file still onboarded
