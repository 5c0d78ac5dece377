"""URL helpers for the review tests."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def as_role(url: str, user: str, password: str) -> str:
    """`url` with its user and password replaced."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc.rsplit('@', 1)[1]}"))
