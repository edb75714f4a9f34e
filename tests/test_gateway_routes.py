"""The gateway listener end to end: the official SDKs, a byte-exact replay of recorded
provider streams, the aimock mock model server, and credential custody."""
from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from tests.harness import Airlock
from tests.upstreams import STREAMS, stream_bytes

RECORDINGS = sorted(p.stem for p in STREAMS.glob("*.sse"))
PROVIDER_KEY = "sk-provider-secret-0123456789"


@pytest.fixture(scope="module")
def gw(tmp_path_factory, replay_upstream, aimock):
    """One Airlock with routes to aimock (openai, anthropic) and to the replay upstream."""
    providers = {
        "openai": {"base_url": aimock.url + "/v1", "api_key_env": "TEST_OPENAI_KEY"},
        "anthropic": {"base_url": aimock.url, "api_key_env": "TEST_ANTHROPIC_KEY"},
        "replay": {"base_url": replay_upstream.url + "/v1", "api_key_env": "TEST_OPENAI_KEY"},
        "replayanthropic": {"base_url": replay_upstream.url, "kind": "anthropic",
                            "api_key_env": "TEST_ANTHROPIC_KEY"},
        "down": {"base_url": "http://127.0.0.1:9/v1"},
    }
    a = Airlock({"providers": providers, "limits": {"max_body_bytes": 200_000}},
                env={"TEST_OPENAI_KEY": PROVIDER_KEY, "TEST_ANTHROPIC_KEY": PROVIDER_KEY + "-anthropic"},
                workdir=tmp_path_factory.mktemp("gw"))
    a.start()
    a.token = a.mint("acme", subject="alice", agent="pytest")
    yield a
    a.stop()


def auth(gw) -> dict:
    return {"authorization": f"Bearer {gw.token}"}


@pytest.mark.parametrize("name", RECORDINGS)
def test_recorded_stream_reaches_the_client_byte_for_byte(gw, name):
    chunks = []
    with httpx.stream("POST", f"{gw.gateway_url}/replay/v1/{name}/chat/completions",
                      json={"model": "m", "stream": True}, headers=auth(gw)) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        chunks.extend(r.iter_raw())
    assert b"".join(chunks) == stream_bytes(name)


def test_stream_is_forwarded_event_by_event_not_buffered(gw):
    """With a paced upstream, the first event arrives while the upstream is still sending."""
    with httpx.stream("POST", f"{gw.gateway_url}/replay/v1/slow-openai-chat-json-177-tokens/chat/completions",
                      json={"stream": True}, headers=auth(gw), timeout=60) as r:
        it = r.iter_raw()
        first = next(it)
        assert first.startswith(b"data: {")
        assert len(first) < len(stream_bytes("openai-chat-json-177-tokens")) // 10
        rest = b"".join(it)
    assert first + rest == stream_bytes("openai-chat-json-177-tokens")


def test_openai_sdk_streams_a_recording(gw):
    client = openai.OpenAI(base_url=f"{gw.gateway_url}/replay/v1/openai-chat-text-include-usage",
                           api_key=gw.token, max_retries=0)
    stream = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}],
                                            stream=True, stream_options={"include_usage": True})
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    assert text and usage.prompt_tokens == 14 and usage.completion_tokens == 30


def test_anthropic_sdk_streams_a_recording(gw):
    # the SDK posts to <base>/v1/messages; the replay upstream finds the recording name in the path
    client = anthropic.Anthropic(base_url=f"{gw.gateway_url}/replayanthropic/v1/anthropic-text-basic",
                                 api_key=gw.token, max_retries=0)
    with client.messages.stream(model="claude-3-opus-latest", max_tokens=64,
                                messages=[{"role": "user", "content": "hi"}]) as s:
        final = s.get_final_message()
    assert final.content[0].text == "Hello there!"
    assert final.usage.input_tokens == 11 and final.usage.output_tokens == 6


def test_openai_sdk_against_aimock_streaming_and_not(gw):
    client = openai.OpenAI(base_url=f"{gw.gateway_url}/openai/v1", api_key=gw.token, max_retries=0)
    r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "Hi there! How can I help?"
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                            stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hi there! How can I help?"


def test_openai_responses_api_against_aimock(gw):
    client = openai.OpenAI(base_url=f"{gw.gateway_url}/openai/v1", api_key=gw.token, max_retries=0)
    r = client.responses.create(model="gpt-4o-mini", input="count to five")
    assert r.output_text == "one two three four five"


def test_anthropic_sdk_against_aimock_streaming_and_not(gw):
    client = anthropic.Anthropic(base_url=f"{gw.gateway_url}/anthropic", api_key=gw.token, max_retries=0)
    msg = client.messages.create(model="claude-sonnet-4-6", max_tokens=100,
                                 messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "Hi there! How can I help?"
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=100,
                                messages=[{"role": "user", "content": "hi"}]) as s:
        assert "".join(s.text_stream) == "Hi there! How can I help?"


def test_old_anthropic_auth_form_x_api_key_is_accepted(gw):
    r = httpx.post(f"{gw.gateway_url}/anthropic/v1/messages?beta=true",
                   headers={"x-api-key": gw.token, "anthropic-version": "2023-06-01"},
                   json={"model": "claude-sonnet-4-6", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["text"] == "Hi there! How can I help?"


def test_provider_key_is_injected_and_gateway_token_removed(gw, replay_upstream):
    replay_upstream.requests.clear()
    r = httpx.post(f"{gw.gateway_url}/replay/v1/json/echo", json={"a": 1},
                   headers={**auth(gw), "x-api-key": gw.token})
    assert r.status_code == 200
    seen = replay_upstream.requests[-1]["headers"]
    assert seen.get("authorization") == f"Bearer {PROVIDER_KEY}"
    assert gw.token not in repr(seen)
    replay_upstream.requests.clear()
    httpx.post(f"{gw.gateway_url}/replayanthropic/v1/json", json={}, headers=auth(gw))
    seen = replay_upstream.requests[-1]["headers"]
    assert seen.get("x-api-key") == PROVIDER_KEY + "-anthropic" and "authorization" not in seen


def test_missing_token_gets_401_in_each_provider_shape(gw):
    r = httpx.post(f"{gw.gateway_url}/openai/v1/chat/completions", json={})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert "missing gateway token" in r.json()["error"]["message"]
    r = httpx.post(f"{gw.gateway_url}/anthropic/v1/messages", json={})
    assert r.status_code == 401 and r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("token", ["sk-someone-elses", "alk_0000000000000000_" + "a" * 32])
def test_wrong_token_gets_401_in_each_sdk_shape(gw, token):
    oa = openai.OpenAI(base_url=f"{gw.gateway_url}/openai/v1", api_key=token, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert "gateway token" in str(e.value)
    an = anthropic.Anthropic(base_url=f"{gw.gateway_url}/anthropic", api_key=token, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        an.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["error"]["type"] == "authentication_error"


def test_revoked_token_is_refused_at_once(gw):
    token = gw.mint("acme")
    key_id = token.split("_")[1]
    assert httpx.post(f"{gw.gateway_url}/replay/v1/json", json={}, headers={"authorization": f"Bearer {token}"}
                      ).status_code == 200
    assert gw.admin("POST", f"/v1/keys/{key_id}/revoke").status_code == 200
    r = httpx.post(f"{gw.gateway_url}/replay/v1/json", json={}, headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]


def test_unknown_route_is_404_listing_valid_prefixes(gw):
    r = httpx.get(f"{gw.gateway_url}/gemini/v1/models", headers=auth(gw))
    assert r.status_code == 404
    body = r.json()["error"]
    assert "/openai/v1/" in body["valid_prefixes"] and "/anthropic/v1/" in body["valid_prefixes"]


def test_upstream_down_is_502_in_provider_shape(gw):
    client = openai.OpenAI(base_url=f"{gw.gateway_url}/down/v1", api_key=gw.token, max_retries=0)
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 502
    assert "could not reach the upstream" in e.value.body["message"]


def test_body_over_the_limit_is_413(gw):
    r = httpx.post(f"{gw.gateway_url}/openai/v1/chat/completions", headers=auth(gw),
                   content=b"{" + b" " * 300_000 + b"}")
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"


def test_upstream_error_status_passes_through_unchanged(gw):
    r = httpx.post(f"{gw.gateway_url}/replay/v1/status/429/x", json={}, headers=auth(gw))
    assert r.status_code == 429 and r.json()["error"]["message"] == "upstream says no"


def test_client_disconnect_mid_stream_leaves_airlock_healthy(gw, replay_upstream):
    with httpx.stream("POST", f"{gw.gateway_url}/replay/v1/slow-openai-chat-json-177-tokens/chat",
                      json={"stream": True}, headers=auth(gw)) as r:
        next(r.iter_raw())
    # the proxy keeps serving, and the error is counted
    assert httpx.post(f"{gw.gateway_url}/replay/v1/json", json={}, headers=auth(gw)).status_code == 200
    from tests.harness import wait_until
    wait_until(lambda: "airlock_request_errors_total{" in gw.admin("GET", "/metrics").text, 20,
               "error metric for the disconnect")


def test_metrics_count_requests_by_listener_route_and_status(gw):
    httpx.post(f"{gw.gateway_url}/replay/v1/json", json={}, headers=auth(gw))
    text = gw.admin("GET", "/metrics").text
    assert 'airlock_requests_total{listener="gateway",route="openai",status="200"}' in text
    assert 'airlock_requests_total{listener="gateway",route="openai",status="401"}' in text
    assert "airlock_request_duration_seconds_bucket" in text


def test_admin_needs_the_token_except_healthz(gw):
    assert httpx.get(gw.admin_url + "/healthz").status_code == 200
    for path in ("/readyz", "/metrics", "/v1/keys"):
        assert httpx.get(gw.admin_url + path).status_code == 401
    assert httpx.get(gw.admin_url + "/v1/keys", headers={"authorization": "Bearer wrong"}).status_code == 401


def test_every_request_writes_an_audit_row_without_the_token(gw):
    marker = "audit-row-probe"
    assert httpx.post(f"{gw.gateway_url}/replay/v1/json/{marker}", json={}, headers=auth(gw)).status_code == 200
    assert httpx.post(f"{gw.gateway_url}/replay/v1/json/{marker}-denied", json={},
                      headers={"authorization": "Bearer nope"}).status_code == 401
    from tests.harness import wait_until

    def rows():
        r = gw.admin("POST", "/v1/audit/query", {
            "sql": f"SELECT * FROM events WHERE kind = 'request' AND path LIKE '%{marker}%' ORDER BY ts"})
        assert r.status_code == 200, r.text
        found = r.json()["rows"]
        return found if len(found) == 2 else None

    ok, denied = wait_until(rows, 30, "two request rows in the audit trail")
    assert (ok["account"], ok["subject"], ok["agent"], ok["listener"], ok["route_kind"], ok["route_name"],
            ok["status"]) == ("acme", "alice", "pytest", "gateway", "openai", "replay", 200)
    assert ok["latency_ms"] > 0
    assert denied["status"] == 401 and denied["outcome"] == "invalid_token" and denied["account"] == ""
    everything = gw.admin("POST", "/v1/audit/query", {"sql": "SELECT * FROM events"}).text
    assert gw.token not in everything and PROVIDER_KEY not in everything
