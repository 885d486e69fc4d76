"""Keep secrets out of what people see: reprs, logs, error messages, notebook output."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["redact_text", "redact_url"]

# ``scheme://user:password@`` or ``scheme://:password@`` inside any text; up to the last ``@``
# before a path or a space, as a password may hold an ``@`` of its own.
_CREDENTIALS = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/]+@")
# ``?password=...`` (redis-py reads a password from the query string), ``&token=...`` and alike.
_QUERY_SECRET = re.compile(r"([?&;][^=&#\s]*(?:pass|secret|token)[^=&#\s]*=)[^&#\s]*", re.I)
# Where a comma starts the next URL of a list (a RabbitMQ cluster's nodes), not a password's comma.
_NEXT_URL = re.compile(r",(?=\s*[a-zA-Z][a-zA-Z0-9+.-]*://)")


def redact_url(url: str) -> str:
    """``url`` without its user and password, in the authority or the query string, fit for
    logs and error messages; a comma-separated list of URLs keeps every one of them."""
    if len(urls := _NEXT_URL.split(url)) > 1:
        return ",".join(redact_url(one) for one in urls)
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = f"***@{rest.rsplit('@', 1)[1]}"
    return _QUERY_SECRET.sub(r"\1***", f"{scheme}{sep}{rest}")


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` (a log tail, an error) with every URL's credentials and each known secret
    replaced by ``***``, so a password that leaked into free text goes no further."""
    text = _QUERY_SECRET.sub(r"\1***", _CREDENTIALS.sub(r"\1***@", text))
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
