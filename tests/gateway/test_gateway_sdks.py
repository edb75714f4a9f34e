"""The official SDKs through a running Airlock against the replayed real recordings."""
from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from tests.gateway.conftest import usage_rows, wait_spend


def oa(gw, name: str, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.gateway_url}/{name}/v1", api_key=token, max_retries=0, timeout=30)


def an(gw, name: str, token: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{gw.gateway_url}/{name}", api_key=token, max_retries=0, timeout=30)


def test_chat_stream_with_usage_matches_recording(gw):
    tok = gw.mint("acme", subject="u-chat1")
    chunks = list(oa(gw, "rchat", tok).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}))
    usage = [c.usage for c in chunks if c.usage]
    assert usage and (usage[0].prompt_tokens, usage[0].completion_tokens) == (14, 30)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text) > 20
    assert wait_spend(gw, "tokens-per-subject", "u-chat1", lambda s: s > 0) == 44
    # the upstream was asked for usage and got the provider key, never the gateway token
    sent = [r for r in gw.upstream.requests if r["path"].startswith("/openai-chat-text-include-usage/")][-1]
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    assert headers.get("authorization") == "Bearer sk-test-provider"
    assert tok not in str(sent["headers"])


def test_chat_stream_usage_chunk_hidden_when_not_asked(gw):
    tok = gw.mint("acme", subject="u-chat2")
    chunks = list(oa(gw, "rchat", tok).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert chunks and all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    sent = [r for r in gw.upstream.requests if r["path"].startswith("/openai-chat-text-include-usage/")][-1]
    assert b'"include_usage":true' in sent["body"]
    assert wait_spend(gw, "tokens-per-subject", "u-chat2", lambda s: s > 0) == 44


def test_anthropic_stream_both_auth_forms(gw):
    tok = gw.mint("acme", subject="u-an1")
    client = an(gw, "anthropic", tok)
    with client.messages.stream(model="claude-3-opus-latest", max_tokens=100,
                                messages=[{"role": "user", "content": "hi"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text and final.usage.input_tokens == 11 and final.usage.output_tokens == 6
    assert wait_spend(gw, "tokens-per-subject", "u-an1", lambda s: s > 0) == 17
    # x-api-key + the old anthropic-version, raw
    r = httpx.post(f"{gw.gateway_url}/anthropic/v1/messages?beta=true",
                   headers={"x-api-key": tok, "anthropic-version": "2023-06-01"},
                   json={"model": "claude-3-opus-latest", "max_tokens": 50, "stream": True,
                         "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert r.status_code == 200 and b"event: message_stop" in r.content
    assert wait_spend(gw, "tokens-per-subject", "u-an1", lambda s: s > 17) == 34


def test_responses_stream_usage(gw):
    tok = gw.mint("acme", subject="u-resp")
    events = list(oa(gw, "rresp5", tok).responses.create(model="gpt-5", input="hi", stream=True))
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage.output_tokens == 469
    assert wait_spend(gw, "tokens-per-subject", "u-resp", lambda s: s > 0) == 53 + 469


def test_model_not_allowed_403_names_rule(gw):
    tok = gw.mint("acme", subject="intern-1")
    with pytest.raises(openai.PermissionDeniedError) as e:
        oa(gw, "rchat", tok).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert "interns" in str(e.value)
    with pytest.raises(anthropic.PermissionDeniedError) as e2:
        an(gw, "anthropic", tok).messages.create(model="claude-3-opus-latest", max_tokens=10,
                                                 messages=[{"role": "user", "content": "x"}])
    assert "interns" in str(e2.value)
    tok2 = gw.mint("acme", subject="bob")
    with pytest.raises(openai.PermissionDeniedError) as e3:
        oa(gw, "rchat", tok2).chat.completions.create(model="o3", messages=[{"role": "user", "content": "x"}])
    assert "acme-models" in str(e3.value)


def test_rate_limit_429_with_retry_after(gw):
    tok = gw.mint("acme", subject="rl", agent="ratelimited")
    client = oa(gw, "rjson", tok)
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    r = httpx.post(f"{gw.gateway_url}/rjson/v1/chat/completions", headers={"authorization": f"Bearer {tok}"},
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}, timeout=30)
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.json()["error"]["code"] == "rate_limited" and "slow-agent" in r.json()["error"]["message"]


def test_unpriced_model_refused_under_hard_usd_budget(gw):
    tok = gw.mint("acme", subject="usd-1")
    r = httpx.post(f"{gw.gateway_url}/rjson/v1/chat/completions", headers={"authorization": f"Bearer {tok}"},
                   json={"model": "gpt-4o-unknown-9000", "messages": [{"role": "user", "content": "x"}]},
                   timeout=30)
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_unpriced"
    # the policy's prices make a model priced (other-co has no model rules)
    tok2 = gw.mint("other-co", subject="usd-2")
    r = httpx.post(f"{gw.gateway_url}/rjson/v1/chat/completions", headers={"authorization": f"Bearer {tok2}"},
                   json={"model": "house-model-1", "messages": [{"role": "user", "content": "x"}]}, timeout=30)
    assert r.status_code == 200
    # settled at the policy's price: 5 prompt tokens x $1/M + 7 completion tokens x $2/M
    assert abs(wait_spend(gw, "tight-usd", "usd-2", lambda s: s > 0, unit="usd") - 19e-6) < 1e-12


def test_invalid_json_body_is_refused(gw):
    tok = gw.mint("acme", subject="bad")
    r = httpx.post(f"{gw.gateway_url}/rchat/v1/chat/completions", headers={"authorization": f"Bearer {tok}",
                   "content-type": "application/json"}, content=b"{not json", timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_explicit_proxy_mode_meters_and_governs_provider_hosts(gw):
    """HTTPS_PROXY-style: the SDK talks to the provider's own URL through Airlock's proxy listener."""
    tok = gw.mint("acme", subject="u-proxy")
    base = f"{gw.upstream.url}/openai-chat-text-include-usage/v1"
    with httpx.Client(proxy=gw.proxy_url, timeout=30) as hc:
        client = openai.OpenAI(base_url=base, api_key=tok, max_retries=0, http_client=hc)
        chunks = list(client.chat.completions.create(model="gpt-4o", stream=True,
                                                     messages=[{"role": "user", "content": "hi"}]))
        assert chunks[-1].choices[0].finish_reason == "stop"
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="o3", messages=[{"role": "user", "content": "hi"}])
    assert wait_spend(gw, "tokens-per-subject", "u-proxy", lambda s: s > 0) == 44


def test_midstream_provider_error_reaches_the_sdk_and_is_recorded(gw):
    tok = gw.mint("acme", subject="u-groq")
    client = oa(gw, "rgroq", tok)
    with pytest.raises(openai.APIError) as e:
        list(client.chat.completions.create(model="gpt-4o", stream=True,
                                            messages=[{"role": "user", "content": "hi"}]))
    assert "tool" in str(e.value).lower() or "failed" in str(e.value).lower()
    (row,) = usage_rows(gw, "u-groq")
    assert row["outcome"] == "upstream_error" and row["tokens_out"] > 0    # the reasoning it streamed is billed
