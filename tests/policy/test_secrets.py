"""The shared secret detector: finds and redacts secrets anywhere in a value."""
from __future__ import annotations

import pytest

from proxy.policy.secrets import find_secrets, has_secret, redact

SAMPLES = {
    "openai_api_key": "sk-proj-Ab3dEfGhIjKlMnOpQrStUvWxYz0123456789",
    "anthropic_api_key": "sk-ant-api03-Ab3dEfGhIjKlMnOpQrStUvWxYz0123456789",
    "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "github_token": "ghp_" + "a1B2c3D4e5" * 4,
    "slack_token": "xoxb-123456789012-abcdefABCDEF",
    "private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "bearer_token": "Authorization: Bearer 0123456789abcdefXYZ",
    "google_api_key": "AIza" + "B" * 35,
}


@pytest.mark.parametrize("kind, text", SAMPLES.items())
def test_each_kind_is_found_and_redacted(kind, text):
    assert kind in find_secrets(f"prefix {text} suffix")
    red = redact({"deep": [{"v": f"prefix {text} suffix"}]})
    assert f"[REDACTED:{kind}]" in red["deep"][0]["v"]
    assert not has_secret(red)


def test_nested_values_keys_and_bytes():
    v = {"a": [1, None, {"b": (SAMPLES["aws_access_key_id"],)}], SAMPLES["github_token"]: True,
         "c": SAMPLES["slack_token"].encode()}
    assert find_secrets(v) == ["aws_access_key_id", "github_token", "slack_token"]
    red = redact(v)
    assert red["a"][2]["b"] == ("[REDACTED:aws_access_key_id]",)
    assert red["c"] == b"[REDACTED:slack_token]"
    assert v["a"][2]["b"] == (SAMPLES["aws_access_key_id"],)   # the original is untouched


def test_private_key_block_is_redacted_whole():
    red = redact("key:\n" + SAMPLES["private_key"] + "\nend")
    assert red == "key:\n[REDACTED:private_key]\nend"


@pytest.mark.parametrize("text", [
    "deploy to production", "the task-force sk-short", "Bearer token please", "AKIA is a prefix",
    "https://example.com/path?q=1", "ghp_short", "eyJhbGciOiJIUzI1NiJ9 alone", 12345, None, 3.5,
])
def test_ordinary_values_are_not_secrets(text):
    assert find_secrets({"x": text}) == [] and redact({"x": text}) == {"x": text}


def test_deep_nesting_never_crashes():
    v: object = SAMPLES["aws_access_key_id"]
    for _ in range(500):
        v = [v]
    assert find_secrets(v) == ["aws_access_key_id"]
    assert not has_secret(redact(v))


def test_sets_are_scanned_and_redacted():
    v = {"s": {SAMPLES["aws_access_key_id"], "plain"}}
    assert find_secrets(v) == ["aws_access_key_id"]
    assert redact(v) == {"s": {"[REDACTED:aws_access_key_id]", "plain"}}
