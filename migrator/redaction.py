"""Keep secrets out of everything the migrator prints: logs, errors and the termination message.

Passwords are registered here as soon as configuration reads them; `redact` is applied to every string that
leaves the process, so a password echoed back by a library error is masked too.
"""

from __future__ import annotations

import re
from urllib.parse import quote, quote_plus

MASK = "***"
_secrets: set[str] = set()
_longest_first: list[str] = []  # a secret that contains another must be masked whole
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?=@)", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def register_secret(secret: str | None) -> None:
    """Remember a secret, in the spellings it may be printed in (raw and percent-encoded)."""
    if secret:
        _secrets.update({secret, quote(secret, safe=""), quote_plus(secret)})
        _longest_first[:] = sorted(_secrets, key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with registered secrets and anything that looks like a URL or conninfo password masked.

    Runs on every log line, so the patterns run only on text that could match them.
    """
    for secret in _longest_first:
        if secret in text:
            text = text.replace(secret, MASK)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    if "password" in text.lower():
        text = _KEYWORD_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    return text
