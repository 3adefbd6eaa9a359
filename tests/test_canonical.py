"""Canonical text, hashes, fingerprints and credential stripping shared by every stage."""

from __future__ import annotations

import random

import pytest

from distill_cli import canonical


@pytest.mark.parametrize("text", ["plain", 'quote " and \\ slash /', "tab\tnew\nline\r", "ctrl \x00\x1f\x7f", "üñí €😀", ""])
def test_user_request_spelled_out_equals_the_generic_form(text):
    request = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": text}]}
    assert canonical.user_request("claude-haiku-4-5", text) == (canonical.dumps(request), canonical.input_hash(request))


def test_user_request_random_unicode():
    rng = random.Random(5)
    for _ in range(300):
        text = "".join(chr(rng.choice([rng.randint(0, 0x7F), rng.randint(0x80, 0xFFFF)])) for _ in range(20))
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        request = {"model": "m", "messages": [{"role": "user", "content": text}]}
        assert canonical.user_request("m", text) == (canonical.dumps(request), canonical.input_hash(request))


def test_input_hash_ignores_model_stream_metadata_but_not_the_question():
    base = {"model": "a", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    same = dict(base, model="b", stream=True, metadata={"user_id": "u"})
    other = dict(base, messages=[{"role": "user", "content": "hello"}])
    assert canonical.input_hash(base) == canonical.input_hash(same) != canonical.input_hash(other)


def test_anthropic_input_and_output():
    request = {
        "system": "S",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image", "source": {}}]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "42"}]}]},
        ],
    }
    assert canonical.anthropic_input(request) == "look\n[image]\n\n42"
    message = {"content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "Let me check."},
                           {"type": "tool_use", "name": "lookup", "input": {"b": 1, "a": 2}}]}
    assert canonical.anthropic_output(message) == 'Let me check.\n{"input":{"a":2,"b":1},"tool":"lookup"}'


def test_openai_input_and_output():
    request = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert canonical.openai_input(request) == "hi"
    assert canonical.openai_system(request) == "S"
    response = {"choices": [{"message": {"content": None, "tool_calls": [
        {"function": {"name": "f", "arguments": '{"x": 1}'}}]}}]}
    assert canonical.openai_output(response) == '{"input":{"x":1},"tool":"f"}'


def test_fingerprint_is_readable_and_stable():
    # claude-sonnet-4-5-20250929 on purpose: a real dated snapshot id (the date stamp must not reach the name).
    r = {"model": "claude-sonnet-4-5-20250929", "system": "Classify the ticket.", "messages": []}
    fp = canonical.task_fingerprint(r, "anthropic")
    assert fp.startswith("sonnet-classify-the-ticket-") and len(fp.rsplit("-", 1)[1]) == 6
    assert canonical.task_fingerprint(dict(r, model="claude-sonnet-4-6"), "anthropic") == fp
    assert canonical.task_fingerprint(dict(r, system="Other."), "anthropic") != fp
    assert canonical.task_fingerprint(dict(r, tools=[{"name": "t"}]), "anthropic") != fp


def test_credentials_stripped_and_masked():
    body = {"api_key": "k", "headers": {"Authorization": "Bearer abcdefghijklmnopqrstuvwxyz"},
            "messages": [{"role": "user", "content": "key sk-ant-api03-AAAAAAAAAAAAAAAA and sk-proj-BBBBBBBBBBBBBBBBBBBB"}]}
    clean = canonical.strip_credentials(body)
    assert clean == {"headers": {}, "messages": [{"role": "user", "content": "key [REDACTED] and [REDACTED]"}]}


def test_the_credential_precheck_never_misses_what_stripping_removes():
    """Rows skip the stripping copy when `has_credentials` says no; it must never say no wrongly."""
    key = "sk-ant-api03-" + "A" * 40
    samples = [
        {"model": "m", "messages": [{"role": "user", "content": "hello"}]},
        {"model": "m", "X-Api-Key": "whatever"},
        {"nested": [{"deep": {"Authorization": "token"}}]},
        {"model": "m", "messages": [{"role": "user", "content": f"my key is {key}"}]},
        {"text": "Bearer abcdefghijklmnopqrstuvwxyz"},
        {"url": "https://user:secret@gateway.example/v1"},
        {"api_key": None, "apikey": 1, "OPENAI-API-KEY": []},
        {"content": "an email a@b.c and a link https://example.com, not a secret"},
        {"content": "sk- alone is not a key"},
    ]
    samples += [{key.upper(): "x"} for key in canonical.CREDENTIAL_KEYS]  # every credential key, any case
    for obj in samples:
        if canonical.strip_credentials(obj) != obj:
            assert canonical.has_credentials(canonical.dumps(obj)), obj
    assert not canonical.has_credentials(canonical.dumps(samples[0]))


def test_metadata_loses_a_credential_key_spelt_with_a_kelvin_sign():
    """U+212A lower-cases to an ASCII k: "api_\u212aey" is api_key to the strip, so the pre-check must not skip it."""
    from distill_cli import calls

    tags = {"api_\u212aey": "secret", "nested": {"X-API-\u212aEY": "s2"}, "team": "ops"}
    assert calls.metadata_json(tags) == '{"nested": {}, "team": "ops"}'
