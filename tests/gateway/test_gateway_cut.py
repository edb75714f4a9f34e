"""Budget cuts mid-stream: each SDK sees a proper end, the upstream is closed, spend stays in budget;
a client that disconnects mid-stream is still billed."""
from __future__ import annotations

import json

import anthropic
import httpx
import openai

from tests.gateway.conftest import usage_rows, wait_spend
from tests.harness import wait_until


def test_chat_cut_ends_with_length_and_closes_upstream(gw):
    tok = gw.mint("acme", subject="tight-chat")
    before = gw.upstream.disconnects
    client = openai.OpenAI(base_url=f"{gw.gateway_url}/rchat177/v1", api_key=tok, max_retries=0, timeout=30)
    chunks = list(client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=1000, stream=True,
        stream_options={"include_usage": True}))
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    usage = [c.usage for c in chunks if c.usage][-1]
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert 20 < len(content_chunks) < 177             # cut mid-stream, well before the recording's end
    assert usage.completion_tokens >= len(content_chunks) - 1
    wait_until(lambda: gw.upstream.disconnects > before, 10, "the upstream to be closed")
    assert wait_spend(gw, "tight-tokens", "tight-chat", lambda s: s > 0) <= 60
    (row,) = usage_rows(gw, "tight-chat")
    data = row["data"] if isinstance(row["data"], dict) else json.loads(row["data"])
    assert row["outcome"] == "cut" and data["cut_reason"] == "budget" and row["tokens_out"] > 20


def test_chat_cut_without_include_usage_has_no_usage_chunk(gw):
    tok = gw.mint("acme", subject="tight-chat2")
    client = openai.OpenAI(base_url=f"{gw.gateway_url}/rchat177/v1", api_key=tok, max_retries=0, timeout=30)
    chunks = list(client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=1000, stream=True))
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"
    # a second call: the hard budget is spent, refused up front with 429 in OpenAI's shape
    wait_spend(gw, "tight-tokens", "tight-chat2", lambda s: s > 50)
    try:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=1000)
        raise AssertionError("expected a 429")
    except openai.RateLimitError as e:
        assert e.body["code"] == "budget_exceeded" and "tight-tokens" in e.body["message"]


def test_anthropic_cut_ends_with_max_tokens(gw):
    tok = gw.mint("acme", subject="tight-an")
    client = anthropic.Anthropic(base_url=f"{gw.gateway_url}/rthink", api_key=tok, max_retries=0, timeout=30)
    with client.messages.stream(model="claude-sonnet-4-20250514", max_tokens=2000,
                                messages=[{"role": "user", "content": "hi"}]) as s:
        events = [e.type for e in s]
        final = s.get_final_message()
    assert final.stop_reason == "max_tokens"
    assert events[-1] == "message_stop"
    assert 10 < final.usage.output_tokens < 282
    assert wait_spend(gw, "tight-tokens", "tight-an", lambda s: s > 0) <= 60


def test_responses_cut_ends_with_incomplete(gw):
    tok = gw.mint("acme", subject="tiny-resp")
    client = openai.OpenAI(base_url=f"{gw.gateway_url}/rresp/v1", api_key=tok, max_retries=0, timeout=30)
    events = list(client.responses.create(model="gpt-4o", input="hi", max_output_tokens=500, stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert 0 < len(deltas) < 7
    # the open text part and message item were closed before the terminal event
    types = [e.type for e in events]
    assert types.index("response.output_text.done") < types.index("response.output_item.done") < len(types) - 1


def test_client_disconnect_mid_stream_is_billed(gw):
    tok = gw.mint("acme", subject="u-leaver")
    with httpx.Client(timeout=30) as c:
        with c.stream("POST", f"{gw.gateway_url}/rchat177/v1/chat/completions",
                      headers={"authorization": f"Bearer {tok}"},
                      json={"model": "gpt-4o", "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}) as r:
            assert r.status_code == 200
            seen = 0
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    seen += 1
                if seen >= 15:
                    break
    # billed for what was generated: at least what we read, less than the whole answer
    billed = wait_spend(gw, "tokens-per-subject", "u-leaver", lambda s: s > 0)
    assert 14 <= billed < 177 + 20
    (row,) = usage_rows(gw, "u-leaver")
    assert row["outcome"] == "client_disconnected" and 14 <= row["tokens_out"] < 177
    assert row["cost"] > 0
