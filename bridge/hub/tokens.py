"""Tokens: EdDSA (Ed25519) JWTs, verified with an explicit algorithm, expiry and audience.

The hub signs enrolment and user tokens with its own key; an enrolled agent signs its own short-lived
tokens with the key it registered at enrolment, so the hub keeps no agent secret at all.
"""
from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from bridge.errors import AuthError, UsageError
from bridge.hub.store import Store
from bridge.hublink import ALGORITHM, AUDIENCE, token_claims

if TYPE_CHECKING:
    from joserfc.jwk import OKPKey

ENROL_TTL = 24 * 3600.0
AGENT_TTL_MAX = 300.0  # an agent token living longer than this is refused: they are meant to be short-lived
LEEWAY = 30  # seconds of clock skew tolerated between agent and hub


class TokenRefused(AuthError):
    """A token is malformed, expired, revoked, used twice or not signed by whom it claims."""


class UserClaims(NamedTuple):
    """Who a user token names and what the hub lets them do."""

    name: str
    role: str
    workspaces: tuple[str, ...]  # empty: every workspace


class Signer:
    """The hub's signing key (Ed25519, 0600 in the state dir, made on first use) and its token store."""

    def __init__(self, state: Path, store: Store, pin: str) -> None:
        self.store = store
        self.pin = pin
        self._key = _load_or_make_key(state / "signing.key")

    def enrolment(self, name: str) -> str:
        """A one-time token an agent `name` enrols with; it carries the hub's certificate pin."""
        return self._issue("enrol", name, ENROL_TTL, {})

    def user(self, name: str, role: str, workspaces: list[str], ttl: float) -> str:
        """A user token for the CLI and the API, valid `ttl` seconds."""
        return self._issue("user", name, ttl, {"role": role, "ws": list(workspaces)})

    def _issue(self, kind: str, name: str, ttl: float, extra: dict) -> str:
        from joserfc import jwt

        now = time.time()  # not rounded: a token made right after a revocation must outlive it
        jti = secrets.token_urlsafe(16)
        claims = {"typ": kind, "sub": name, "aud": AUDIENCE, "iat": now, "exp": int(now + ttl), "jti": jti,
                  "fp": self.pin, **extra}
        self.store.add_token(jti, kind, name)
        return jwt.encode({"alg": ALGORITHM}, claims, self._key, algorithms=[ALGORITHM])

    def check_user(self, token: str) -> UserClaims:
        """The claims of a valid, unrevoked user token; raises TokenRefused."""
        claims = _verify(token, self._key, "user")
        _refuse_revoked(self.store, claims)
        workspaces = claims.get("ws") or []
        return UserClaims(str(claims["sub"]), str(claims.get("role", "")), tuple(str(w) for w in workspaces))

    def check_enrolment(self, token: str) -> str:
        """The agent name of a valid enrolment token, spending it; raises TokenRefused when spent or bad."""
        claims = _verify(token, self._key, "enrol")
        _refuse_revoked(self.store, claims)
        if not self.store.use_token(str(claims.get("jti", ""))):
            raise TokenSpent("this enrolment token was used already",
                               hint="make a new one on the hub: `bridge hub token agent NAME`")
        return str(claims["sub"])

    def check_agent(self, token: str) -> str:
        """The name of an enrolled agent whose own signed token this is; raises TokenRefused."""
        from joserfc.jwk import OKPKey

        try:
            name = str(token_claims(token).get("sub", ""))
        except UsageError as e:
            raise TokenRefused("token refused: malformed", hint="upgrade the agent") from e
        agent = self.store.agent(name)
        if agent is None:
            raise TokenRefused(f"agent `{name}` is not enrolled (or was revoked)",
                               hint="enrol it: `bridge hub token agent NAME`, then `bridge agent up --token T`")
        try:
            claims = _verify(token, OKPKey.import_key(agent.public_key), "agent")
        except TokenRefused as e:  # the agent signed it just now: only a clock running behind makes it old
            if e.message.endswith("expired"):
                raise TokenRefused("agent token expired: the agent's clock is behind the hub's",
                                   hint="set the server's clock (e.g. `timedatectl set-ntp true`)") from e
            raise
        if float(claims["exp"]) - float(claims.get("iat", 0)) > AGENT_TTL_MAX:
            raise TokenRefused("agent token lives too long", hint="upgrade the agent")
        return name


class TokenSpent(TokenRefused):
    """An enrolment token that was used already (by this very agent, if it also proves its key)."""


def _verify(token: str, key: OKPKey, kind: str) -> dict:
    """Signature (Ed25519 only), audience, expiry and kind; raises TokenRefused naming what failed."""
    from joserfc import jwt
    from joserfc.errors import JoseError

    try:
        decoded = jwt.decode(token, key, algorithms=[ALGORITHM])
        registry = jwt.JWTClaimsRegistry(leeway=LEEWAY, exp={"essential": True},
                                         aud={"essential": True, "value": AUDIENCE},
                                         sub={"essential": True}, typ={"essential": True, "value": kind})
        registry.validate(decoded.claims)
    except JoseError as e:
        raise TokenRefused(f"token refused: {_reason(e)}", hint="get a fresh token from the hub's operator") from e
    except (ValueError, TypeError) as e:
        raise TokenRefused("token refused: malformed", hint="copy the whole token again") from e
    return decoded.claims


def _reason(error: Exception) -> str:
    """A short reason that names no token content."""
    name = type(error).__name__
    return {"ExpiredTokenError": "expired", "BadSignatureError": "bad signature",
            "InvalidClaimError": "wrong audience or kind", "MissingClaimError": "a required claim is missing",
            "UnsupportedAlgorithmError": "algorithm not allowed"}.get(name, "invalid")


def _refuse_revoked(store: Store, claims: dict) -> None:
    revoked = store.revoked_at(str(claims["sub"]))
    if revoked is not None and float(claims.get("iat", 0)) <= revoked:
        raise TokenRefused(f"`{claims['sub']}` was revoked", hint="ask the hub's operator for a new token")


def _load_or_make_key(path: Path) -> OKPKey:
    from joserfc.jwk import OKPKey

    if path.is_file():
        return OKPKey.import_key(path.read_bytes())
    key = OKPKey.generate_key("Ed25519")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.as_pem(private=True))
    return key

