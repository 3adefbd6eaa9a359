"""Canonical text and identity of a call: what a student learns from and is keyed by.

Used alike by the importer, the recording proxy, students and the router, so a
request hashes and reads the same wherever it came from. Also the one place that
strips credentials out of bodies and masks secret-looking strings.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re

# Keys whose values are credentials wherever they appear in a body or header set.
CREDENTIAL_KEYS = frozenset(
    {"x-api-key", "api-key", "api_key", "apikey", "authorization", "proxy-authorization", "openai-api-key", "anthropic-api-key"}
)
# Provider key shapes (Anthropic sk-ant-..., OpenAI sk-/sk-proj-..., bearer tokens).
SECRET_RE = re.compile(r"(sk-ant-[A-Za-z0-9_\-]{8,}|sk-(?:proj-)?[A-Za-z0-9_\-]{16,}|Bearer\s+[A-Za-z0-9._\-]{16,})")
REDACTED = "[REDACTED]"

# Request fields that do not change what is being asked.
_NOT_IN_HASH = frozenset({"model", "stream", "stream_options", "metadata", "user", "service_tier", "store"})


_encode = json.JSONEncoder(ensure_ascii=False).encode


_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def dumps(obj) -> str:
    """Canonical JSON: sorted keys, no spaces, unicode kept."""
    return _dumps(obj)


def input_hash(request: dict) -> str:
    """Hash of the canonical request minus model/stream/metadata: equal questions hash equal."""
    body = {k: v for k, v in request.items() if k not in _NOT_IN_HASH}
    return hashlib.sha256(dumps(body).encode()).hexdigest()[:32]


def user_request(model: str, text: str) -> tuple[str, str]:
    """(request_json, input_hash) of the one-user-turn request `{"model", "messages": [user text]}`.

    Spelled out as strings because bulk imports build millions of them; equal to
    `dumps(request)` and `input_hash(request)` (a test holds it to that).
    """
    body = '{"messages":[{"content":' + _encode(text) + ',"role":"user"}]'
    digest = hashlib.sha256((body + "}").encode()).hexdigest()[:32]
    return body + ',"model":' + _encode(model) + "}", digest


def has_credentials(text: str) -> bool:
    """Whether JSON text may hold something `strip_credentials` would remove (no false negatives)."""
    if "sk-" in text or "Bearer" in text or ("@" in text and "://" in text):
        return True
    lowered = text.lower()
    if "key" not in lowered and "authorization" not in lowered:  # in every credential key's name
        return False
    return any(f'"{key}"' in lowered for key in CREDENTIAL_KEYS)


def strip_credentials(obj):
    """A copy of a JSON value with credential keys dropped and secret-looking strings masked."""
    if isinstance(obj, dict):
        return {k: strip_credentials(v) for k, v in obj.items() if k.lower() not in CREDENTIAL_KEYS}
    if isinstance(obj, list):
        return [strip_credentials(v) for v in obj]
    if isinstance(obj, str):
        return mask_secrets(obj)
    return obj


# user:password@ in a URL (gateways that take their token in the URL).
URL_USERINFO_RE = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")


def mask_secrets(text: str) -> str:
    if "sk-" in text or "Bearer" in text:
        text = SECRET_RE.sub(REDACTED, text)
    if "@" in text and "://" in text:
        text = URL_USERINFO_RE.sub(r"\1" + REDACTED + "@", text)
    return text


def public_url(url: str) -> str:
    """A URL fit for a message: no user:password@, no query string."""
    return URL_USERINFO_RE.sub(r"\1", url.split("?", 1)[0])


# ---- Anthropic Messages API --------------------------------------------------------


def _block_text(block) -> str:
    """The text a student sees of one content block."""
    if isinstance(block, str):
        return block
    kind = block.get("type")
    if kind == "text":
        return block.get("text", "")
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            return "\n".join(_block_text(b) for b in content)
        return content or ""
    if kind in ("image", "document"):
        return f"[{kind}]"
    return ""


def _content_text(content) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(t for t in (_block_text(b) for b in content or []) if t)


def anthropic_input(request: dict) -> str:
    """The user turns' text, in order."""
    return "\n\n".join(_content_text(m.get("content")) for m in request.get("messages", []) if m.get("role") == "user")


def anthropic_output(message: dict | None) -> str | None:
    """Assistant text, with tool calls as canonical JSON; thinking blocks left out."""
    if not message:
        return None
    parts = []
    for block in message.get("content") or []:
        if block.get("type") == "text":
            parts.append(block.get("text", ""))
        elif block.get("type") in ("tool_use", "server_tool_use"):
            parts.append(dumps({"tool": block.get("name"), "input": block.get("input")}))
    return "".join(parts) if len(parts) <= 1 else "\n".join(parts)


def anthropic_system(request: dict) -> str:
    system = request.get("system")
    return _content_text(system) if system else ""


# ---- OpenAI chat completions ------------------------------------------------------


def _openai_content_text(content) -> str:
    if isinstance(content, str) or content is None:
        return content or ""
    return "\n".join(
        p.get("text", "") if p.get("type") == "text" else f"[{p.get('type', 'part')}]" for p in content if isinstance(p, dict)
    )


def openai_input(request: dict) -> str:
    return "\n\n".join(
        _openai_content_text(m.get("content")) for m in request.get("messages", []) if m.get("role") == "user"
    )


def openai_system(request: dict) -> str:
    return "\n\n".join(
        _openai_content_text(m.get("content")) for m in request.get("messages", []) if m.get("role") in ("system", "developer")
    )


def openai_output(response: dict | None) -> str | None:
    if not response or not response.get("choices"):
        return None
    message = response["choices"][0].get("message") or {}
    parts = []
    if message.get("content"):
        parts.append(message["content"])
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except ValueError:
            args = fn.get("arguments")
        parts.append(dumps({"tool": fn.get("name"), "input": args}))
    return "\n".join(parts) if parts else ""


# ---- OpenAI Responses API --------------------------------------------------------


def _responses_item_text(item) -> str:
    """The text of one Responses input item: a message's text parts, a tool result's output."""
    if isinstance(item, str):
        return item
    if not isinstance(item, dict):
        return ""
    kind = item.get("type", "message")
    if kind == "message":
        content = item.get("content")
        if isinstance(content, str) or content is None:
            return content or ""
        return "\n".join(
            p.get("text", "") if p.get("type") in ("input_text", "output_text", "text") else f"[{p.get('type', 'part')}]"
            for p in content if isinstance(p, dict)
        )
    if kind in ("function_call_output", "custom_tool_call_output"):
        output = item.get("output")
        return output if isinstance(output, str) else dumps(output)
    return ""


def responses_input(request: dict) -> str:
    """`instructions`, then the text of every input item (a string input is one user message), in order."""
    raw = request.get("input")
    items = [raw] if isinstance(raw, str) else raw or []
    parts = [request["instructions"]] if isinstance(request.get("instructions"), str) and request["instructions"] else []
    parts += [t for t in (_responses_item_text(i) for i in items) if t]
    return "\n\n".join(parts)


def responses_system(request: dict) -> str:
    instructions = request.get("instructions")
    return instructions if isinstance(instructions, str) else ""


def responses_tool_names(request: dict) -> list[str]:
    """Names of the function (and custom) tools a Responses request offers; built-in tools by their type."""
    return [t.get("name") or t.get("type", "") for t in request.get("tools") or [] if isinstance(t, dict)]


def responses_output(response: dict | None) -> str | None:
    """The `output_text` of the message items, with function calls as canonical tool JSON (as chat's)."""
    if not response or not isinstance(response.get("output"), list):
        return None
    parts = []
    for item in response["output"]:
        kind = item.get("type")
        if kind == "message":
            text = "".join(p.get("text", "") for p in item.get("content") or [] if p.get("type") == "output_text")
            if text:
                parts.append(text)
        elif kind == "function_call":
            try:
                args = json.loads(item.get("arguments") or "{}")
            except ValueError:
                args = item.get("arguments")
            parts.append(dumps({"tool": item.get("name"), "input": args}))
    return "\n".join(parts)


# ---- task fingerprint -------------------------------------------------------------


def model_family(model: str | None) -> str:
    """`claude-sonnet-4-5-20250929` -> `sonnet`; `gpt-4o-mini-2024-07-18` -> `gpt-4o-mini`."""
    if not model:
        return "model"
    m = model.lower()
    for family in ("opus", "sonnet", "haiku"):
        if family in m:
            return family
    m = re.sub(r"-\d{4}-?\d{2}-?\d{2}$", "", m)
    return m


def task_fingerprint(request: dict, provider: str) -> str:
    """A short readable id for a request's task: family, first words of the instructions, a hash.

    Same model family + system prompt + tool names -> same id.
    """
    family = model_family(request.get("model"))
    if provider == "responses":
        # The Responses API (a request shape, not a row's provider): its rows' input holds the instructions, as
        # chat rows' does not, so its tasks are its own and a student of chat calls never serves Responses calls.
        return _fingerprint(family, responses_system(request), tuple(sorted(responses_tool_names(request))), "responses")
    if provider == "openai":
        system = openai_system(request)
        tools = sorted((t.get("function") or {}).get("name", "") for t in request.get("tools") or [])
    else:
        system = anthropic_system(request)
        tools = sorted(t.get("name", "") for t in request.get("tools") or [])
    return _fingerprint(family, system, tuple(tools))


@functools.lru_cache(maxsize=1024)  # a job asks the same few instructions over and over
def _fingerprint(family: str, system: str, tools: tuple[str, ...], api: str | None = None) -> str:
    hashed = [family, system, list(tools)] + ([api] if api else [])
    digest = hashlib.sha256(dumps(hashed).encode()).hexdigest()[:6]
    words = re.findall(r"[a-z0-9]+", system.lower())[:3] or list(tools[:2]) or ["task"]
    return "-".join([family, *words, digest])
