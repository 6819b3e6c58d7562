"""Keeping credentials out of logs, errors and Dagster metadata."""

from __future__ import annotations

import os
import re
from urllib.parse import quote

# user:password@ in a URL. A password may hold any character but whitespace (`@`, `/`, `:`
# and `#` too, typed raw): the match runs to the last @ of the URL, masking too much rather
# than leaving a piece of the password.
_USERINFO_PASSWORD = re.compile(r"(://[^:/@\s'\"]+):\S*@")
# token=..., api_key=..., password=... in a query string or anywhere in a text.
_SECRET_PARAMETER = re.compile(
    r"(?i)\b((?:access_|api_?|auth_?|bearer_?)?(?:token|key|secret|password|passwd|pwd)=)[^&\s'\"]+"
)
# The settings whose URLs may carry a password: their passwords are masked wherever they appear.
SECRET_URL_SETTINGS = (
    "DATABASE_URL",
    "DAGSTER_POSTGRES_URL",
    "PROMETHEUS_URL",
    "MONGO_URI",
    "API_DATABASE_URL",
)


def _known_passwords() -> list[str]:
    """The passwords of the secret settings as set now, raw and percent-encoded, longest first."""
    from carbon_pipeline.database_url import DatabaseUrl

    found = set()
    for name in SECRET_URL_SETTINGS:
        value = os.environ.get(name, "")
        scheme, sep, rest = value.partition("://")
        if not sep or "@" not in rest.partition("?")[0]:
            continue
        password = DatabaseUrl.parse("postgresql://" + rest).password
        if password and len(password) >= 3:
            found.update({password, quote(password, safe="")})
    return sorted(found, key=len, reverse=True)


def mask_secrets(text: str) -> str:
    """Any text (a URL, an exception's message) with the passwords of URLs, the passwords of
    the secret settings wherever they appear, and the values of secret-looking parameters
    replaced by ***."""
    for password in _known_passwords():
        text = text.replace(password, "***")
    return _SECRET_PARAMETER.sub(r"\1***", _USERINFO_PASSWORD.sub(r"\1:***@", text))


def mask_url(url: str) -> str:
    """The URL with its password and secret query parameters replaced by ***."""
    return mask_secrets(url)
