"""Keeping credentials out of logs, errors and Dagster metadata."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_USERINFO_PASSWORD = re.compile(r"://([^:/@\s]+):[^@/\s]+@")


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def mask_secrets(text: str) -> str:
    """Any text (an exception's, say) with the passwords of URLs in it replaced by ***."""
    return _USERINFO_PASSWORD.sub(r"://\1:***@", text)
