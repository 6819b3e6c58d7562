"""Keeping credentials out of logs, errors and Dagster metadata."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# user:password@ in a URL; the password may hold any character but whitespace and @ (a
# password with / is common, though not valid URL syntax).
_USERINFO_PASSWORD = re.compile(r"(://[^:/@\s]+):[^@\s]+@")
# token=..., api_key=..., password=... in a query string or anywhere in a text.
_SECRET_PARAMETER = re.compile(
    r"(?i)\b((?:access_|api_?|auth_?|bearer_?)?(?:token|key|secret|password|passwd|pwd)=)[^&\s'\"]+"
)


def mask_secrets(text: str) -> str:
    """Any text (a URL, an exception's message) with the passwords of URLs and the values of
    secret-looking parameters replaced by ***."""
    return _SECRET_PARAMETER.sub(r"\1***", _USERINFO_PASSWORD.sub(r"\1:***@", text))


def mask_url(url: str) -> str:
    """The URL with its password and secret query parameters replaced by ***."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        url = urlunsplit(parts._replace(netloc=netloc))
    return mask_secrets(url)
