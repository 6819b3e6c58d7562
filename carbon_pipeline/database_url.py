"""PostgreSQL URLs as people write them: a password may hold any character.

`postgresql://user:pass@host:5432/db?sslmode=require`, where the password may contain `/`,
`@`, `:`, `#` or `%` as typed (or percent-encoded, as RFC 3986 asks: `%40` for `@`). Only `?`
ends the part before the query, so a password with `?` must write it `%3F`; a `%` followed by
two hex digits is read as an escape, so a literal one is written `%25`.

Every URL handed on (to SQLAlchemy, psycopg, Dagster's instance) is rendered again with the
user and password percent-encoded, so each of them reads the same password.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import quote, unquote


class DatabaseUrlError(ValueError):
    """Not a postgresql:// URL; the message never shows the password."""


SCHEMES = ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2")


@dataclass(frozen=True)
class DatabaseUrl:
    scheme: str
    user: str | None
    password: str | None
    host: str  # host[:port], may be empty (a socket)
    database: str
    query: str

    @classmethod
    def parse(cls, text: str) -> DatabaseUrl:
        scheme, sep, rest = text.strip().partition("://")
        if not sep or scheme not in SCHEMES:
            raise DatabaseUrlError(
                f"expected a postgresql:// URL, got one starting {scheme[:20]!r}"
                if sep
                else "expected a postgresql:// URL"
            )
        head, _, query = rest.partition("?")
        userinfo, at, hostpath = head.rpartition("@")
        host, _, database = hostpath.partition("/")
        user = password = None
        if at:
            name, colon, secret = userinfo.partition(":")
            user = unquote(name)
            password = unquote(secret) if colon else None
        return cls(scheme, user, password, host, unquote(database), query)

    def with_(self, **changes) -> DatabaseUrl:
        return replace(self, **changes)

    def render(self, masked: bool = False) -> str:
        """The URL with user and password percent-encoded (or the password as ***)."""
        userinfo = ""
        if self.user is not None:
            userinfo = quote(self.user, safe="")
            if self.password is not None:
                userinfo += ":" + ("***" if masked else quote(self.password, safe=""))
            userinfo += "@"
        query = f"?{self.query}" if self.query else ""
        return f"{self.scheme}://{userinfo}{self.host}/{quote(self.database, safe='')}{query}"
