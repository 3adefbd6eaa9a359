"""Where a student may send its inputs and an API key: the one rule.

A student file is data, and a pull request can edit it. An LLM student's file
names its endpoint (`base_url`), so a file alone must never decide where a key,
or the calls' inputs, go. A student may talk to:

  * a provider's official API host (https://api.anthropic.com, https://api.openai.com);
  * an endpoint the person running distill allowed: `--allow-endpoint URL`, the
    `DISTILL_ALLOWED_ENDPOINTS` variable (URLs separated by commas or spaces), or
    the SDKs' own `ANTHROPIC_BASE_URL` / `OPENAI_BASE_URL`, which the environment
    already trusts with its key;
  * a loopback address (a local vLLM or Ollama), when it is sent no key.

An allowed URL covers the same scheme, host and port and any path under its own.
This module never reads a key and never connects anywhere.
"""

from __future__ import annotations

import ipaddress
import os
import re
from urllib.parse import urlsplit

from distill_cli.errors import InputError

PROVIDER_HOSTS = ("api.anthropic.com", "api.openai.com")
ALLOWED_ENV = "DISTILL_ALLOWED_ENDPOINTS"
TRUSTED_ENV = ("ANTHROPIC_BASE_URL", "OPENAI_BASE_URL")
DEFAULT_PORTS = {"http": 80, "https": 443}


def _parts(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path) of an http(s) URL without credentials; None for anything else."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.username is not None or parts.password is not None:
        return None
    return parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme], parts.path.rstrip("/")


def _covers(allowed: str, url: str) -> bool:
    a, u = _parts(allowed), _parts(url)
    if a is None or u is None or a[:3] != u[:3]:
        return False
    return u[3] == a[3] or u[3].startswith(a[3] + "/")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_endpoints(given: tuple[str, ...] | list[str] = (), environ: dict | None = None) -> list[str]:
    """The endpoints allowed by the command line (`given`) and the environment."""
    env = os.environ if environ is None else environ
    listed = [u for u in re.split(r"[,\s]+", env.get(ALLOWED_ENV, "")) if u]
    trusted = [env[name] for name in TRUSTED_ENV if env.get(name)]
    return [*given, *listed, *trusted]


def check_allowed(url: str, *, sends_key: bool, given: tuple[str, ...] | list[str] = (), who: str, environ: dict | None = None) -> None:
    """InputError unless `who` may send its inputs (and, with `sends_key`, an API key) to `url`."""
    parts = _parts(url)
    if parts is None:
        raise InputError(f"{who}: its endpoint {url!r} is not an http(s) URL without credentials; distill will not call it")
    scheme, host, port, _ = parts
    if scheme == "https" and port == 443 and host in PROVIDER_HOSTS:
        return
    if any(_covers(a, url) for a in allowed_endpoints(given, environ)):
        return
    if not sends_key and _loopback(host):
        return
    raise InputError(
        f"{who}: its endpoint {url} is not a provider's API host nor an endpoint you allowed; distill sends no "
        f"{'key or ' if sends_key else ''}input there unless you pass --allow-endpoint {url} (or list it in {ALLOWED_ENV})"
    )
