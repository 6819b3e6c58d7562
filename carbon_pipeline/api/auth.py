"""Who is asking: an OIDC bearer token (a JWT) verified against the configured issuer's keys
(its signature, issuer, audience and expiry), or nobody. STFC's IAM is such an issuer; any
OpenID Connect provider serves its keys at the jwks_uri of its discovery document."""

from __future__ import annotations

from dataclasses import dataclass

import jwt
import requests

from carbon_pipeline.api.db import ANALYST, REPORTER

# Signatures an issuer may use; never "none" and never a shared secret (HS*): the service
# holds no secret of the issuer's.
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
LEEWAY_SECONDS = 30


class Unauthorized(Exception):
    """No valid token where one is needed (401); the message says what was wrong with it."""


class Forbidden(Exception):
    """A valid token that does not give this caller the data asked for (403)."""


class IssuerUnavailable(Exception):
    """The issuer's keys could not be read (503)."""


@dataclass(frozen=True)
class Caller:
    username: str | None = None  # None: nobody signed in
    analyst: bool = False

    @property
    def aggregate_role(self) -> str:
        """The role aggregate questions are answered as: an analyst sees what analysts see,
        everyone else what carbon_reporter sees."""
        return ANALYST if self.analyst else REPORTER

    def require_person(self, username: str) -> None:
        """Refuses anyone but `username` and analysts."""
        if self.username is None and not self.analyst:
            raise Unauthorized(
                "a person's usage needs a bearer token: 'Authorization: Bearer <token>'"
            )
        if not self.analyst and self.username != username:
            raise Forbidden(
                f"this token is {self.username!r}'s: it may not read {username!r}'s usage"
            )

    def require_signed_in(self, what: str) -> None:
        if self.username is None and not self.analyst:
            raise Unauthorized(f"{what} needs a bearer token: 'Authorization: Bearer <token>'")

    def require_analyst(self, what: str) -> None:
        if self.username is None and not self.analyst:
            raise Unauthorized(f"{what} needs a bearer token: 'Authorization: Bearer <token>'")
        if not self.analyst:
            raise Forbidden(f"{what} needs the analyst claim")


NOBODY = Caller()


class TokenVerifier:
    def __init__(
        self,
        issuer: str | None,
        audience: str | None,
        jwks_url: str | None = None,
        username_claim: str = "preferred_username",
        analyst_claim: str = "groups",
        analyst_value: str = "carbon-analyst",
    ):
        self.issuer, self.audience = issuer, audience
        self.username_claim, self.analyst_claim = username_claim, analyst_claim
        self.analyst_value = analyst_value
        self._jwks_url = jwks_url
        self._keys: jwt.PyJWKClient | None = None

    def _key_client(self) -> jwt.PyJWKClient:
        if self._keys is None:
            url = self._jwks_url
            if url is None:
                try:
                    discovery = requests.get(
                        self.issuer.rstrip("/") + "/.well-known/openid-configuration", timeout=5
                    )
                    discovery.raise_for_status()
                    url = discovery.json()["jwks_uri"]
                except (requests.RequestException, ValueError, KeyError) as exc:
                    raise IssuerUnavailable(
                        f"the issuer's discovery document could not be read ({type(exc).__name__})"
                    ) from None
            self._keys = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)
        return self._keys

    def caller(self, authorization: str | None) -> Caller:
        """The caller an Authorization header names (none: NOBODY)."""
        if not authorization:
            return NOBODY
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("expected 'Authorization: Bearer <token>'")
        if not self.issuer or not self.audience:
            raise Unauthorized(
                "this service accepts no tokens: API_OIDC_ISSUER and API_OIDC_AUDIENCE are not set"
            )
        try:
            key = self._key_client().get_signing_key_from_jwt(token.strip())
        except jwt.PyJWKClientConnectionError:
            raise IssuerUnavailable("the issuer's keys could not be read") from None
        except (jwt.PyJWKClientError, jwt.DecodeError) as exc:
            raise Unauthorized(f"the token cannot be checked: {exc}") from None
        try:
            claims = jwt.decode(
                token.strip(),
                key.key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("the token is for another audience than this service") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized(
                "the token was issued by another issuer than this service trusts"
            ) from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"the token is not valid: {exc}") from None
        username = claims.get(self.username_claim) or claims.get("sub")
        if not isinstance(username, str) or not username:
            raise Unauthorized(f"the token names nobody (no {self.username_claim!r} claim)")
        granted = claims.get(self.analyst_claim, [])
        granted = [granted] if isinstance(granted, str) else granted
        return Caller(username=username, analyst=self.analyst_value in (granted or []))
