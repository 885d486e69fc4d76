"""Keep secrets out of what people see: reprs, logs, error messages, notebook output."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["redact_text", "redact_url"]

# ``scheme://user:password@`` or ``scheme://:password@`` inside any text.
_CREDENTIALS = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/@]+@")


def redact_url(url: str) -> str:
    """``url`` without its user and password, fit for logs and error messages."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.rsplit('@', 1)[1]}"


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` (a log tail, an error) with every URL's credentials and each known secret
    replaced by ``***``, so a password that leaked into free text goes no further."""
    text = _CREDENTIALS.sub(r"\1***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
