"""Passwords out of anything shown: URLs, conninfo strings, driver errors."""

from __future__ import annotations

import re

# greedy up to the last '@' before the path: an unencoded '@' may be in the password
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^\s/]*(@)")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact_secret(text: str) -> str:
    """``text`` (a URL or conninfo string) with any password replaced by ``***``."""
    return _KV_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***\2", text))


def scrub(text: str, url: str | None) -> str:
    """``text`` (say, a driver's error message) with the password of ``url``
    removed, wherever it appears, and any URL or conninfo password masked."""
    if url:
        for pattern in (_URL_PASSWORD, _KV_PASSWORD):
            for match in pattern.finditer(url):
                secret = url[match.end(1) : match.start(2)] if pattern is _URL_PASSWORD else match.group(2)
                for form in {secret, secret.strip("'")}:
                    if len(form) >= 3:
                        text = text.replace(form, "***")
    return redact_secret(text)
