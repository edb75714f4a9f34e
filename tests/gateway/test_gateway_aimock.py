"""The SDKs through Airlock against the third-party mock model server (@copilotkit/aimock)."""
from __future__ import annotations

import anthropic
import httpx
import openai

from tests.gateway.conftest import usage_rows, wait_spend


def oa(gw, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.gateway_url}/mock/v1", api_key=token, max_retries=0, timeout=30)


def test_models_list_filtered_to_what_the_caller_may_use(gw):
    ids = {m.id for m in oa(gw, gw.mint("acme", subject="m1")).models.list()}
    assert ids == {"gpt-4o", "claude-3-5-sonnet-20241022"}          # acme: gpt-4o*, claude-*
    intern = {m.id for m in oa(gw, gw.mint("acme", subject="intern-2")).models.list()}
    assert intern == set()                                          # interns: gpt-4o-mini only (not offered)
    everyone = {m.id for m in oa(gw, gw.mint("other-co", subject="m2")).models.list()}
    assert "gemini-2.0-flash" in everyone and len(everyone) == 5   # no rule for other-co


def test_chat_non_streaming_settled_from_usage(gw):
    r = oa(gw, gw.mint("acme", subject="mock-1")).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "Hi there! How can I help?"
    assert wait_spend(gw, "tokens-per-subject", "mock-1", lambda s: s > 0) == 17


def test_chat_stream_from_mock_gets_usage_injected(gw):
    chunks = list(oa(gw, gw.mint("acme", subject="mock-2")).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "count to five"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three four five"
    assert all(c.usage is None for c in chunks)                     # the client did not ask for it
    assert wait_spend(gw, "tokens-per-subject", "mock-2", lambda s: s > 0) == 17   # but we metered it


def test_anthropic_sdk_against_mock(gw):
    client = anthropic.Anthropic(base_url=f"{gw.gateway_url}/mockan", api_key=gw.mint("acme", subject="mock-3"),
                                 max_retries=0, timeout=30)
    with client.messages.stream(model="claude-3-5-sonnet-20241022", max_tokens=100,
                                messages=[{"role": "user", "content": "hi"}]) as s:
        assert "".join(s.text_stream) == "Hi there! How can I help?"
    assert wait_spend(gw, "tokens-per-subject", "mock-3", lambda s: s > 0) == 17


def test_embeddings_metered(gw):
    tok = gw.mint("other-co", subject="emb-1")
    r = openai.OpenAI(base_url=f"{gw.gateway_url}/mock/v1", api_key=tok, max_retries=0).embeddings.create(
        model="text-embedding-3-small", input="hello world")
    assert len(r.data[0].embedding) > 10
    (row,) = usage_rows(gw, "emb-1")          # one ledger row per call (aimock reports 0 tokens)
    assert row["outcome"] == "ok" and row["status"] == 200 and row["model"] == "text-embedding-3-small"
    assert row["provider"] == "mock"


def test_refusal_in_anthropic_shape(gw):
    r = httpx.post(f"{gw.gateway_url}/mockan/v1/messages",
                   headers={"x-api-key": gw.mint("acme", subject="intern-3"), "anthropic-version": "2023-06-01"},
                   json={"model": "claude-3-5-sonnet-20241022", "max_tokens": 5,
                         "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert r.status_code == 403
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "permission_error"
    assert "interns" in body["error"]["message"]


def test_budgets_cli(gw):
    import json

    from typer.testing import CliRunner

    from proxy.cli import budgets as budgets_cli
    from proxy.cli import main as cli_main
    if "budgets" not in cli_main.GROUPS:
        budgets_cli.register(cli_main.app)
    oa(gw, gw.mint("acme", subject="cli-1")).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    wait_spend(gw, "tokens-per-subject", "cli-1", lambda s: s > 0)
    run = CliRunner().invoke(cli_main.app, ["--admin", gw.admin_url, "--admin-token", gw.admin_token, "budgets",
                                            "list", "--scope-value", "cli-1", "--json"])
    assert run.exit_code == 0, run.output
    (row,) = json.loads(run.stdout)
    assert row["budget"] == "tokens-per-subject" and row["spent"] == 17 and row["hard"] is False
    table = CliRunner().invoke(cli_main.app, ["--admin", gw.admin_url, "--admin-token", gw.admin_token, "budgets",
                                              "list", "--scope-value", "cli-1"])
    assert table.exit_code == 0 and "tokens-per-subject" in table.stdout
    bad = CliRunner().invoke(cli_main.app, ["--admin", gw.admin_url, "--admin-token", "wrong", "budgets", "list"])
    assert bad.exit_code == 3 and "admin token" in bad.stderr
