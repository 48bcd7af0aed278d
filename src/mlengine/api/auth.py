"""Bearer-token authentication, and the rule about which addresses a server may bind.

Tokens come from ``Settings.auth_tokens`` (``MLENGINE_AUTH_TOKENS``, comma-separated) and/or
``Settings.auth_tokens_file`` (one token per line; blank lines and ``#`` comments skipped).
Only their SHA-256 digests are kept in memory; a presented token is hashed and compared with
:func:`hmac.compare_digest` against every digest, so timing reveals neither which token
matched nor how much of one did.

With tokens configured every request except ``GET /healthz`` needs
``Authorization: Bearer <token>`` (or ``?access_token=``, as Google accepts; the header is
better, query strings end up in logs). A missing or wrong token gets 401 UNAUTHENTICATED with
``WWW-Authenticate: Bearer``. Without tokens the server must listen on loopback only, unless
the operator says ``--insecure`` (:func:`check_bind_address`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from mlengine.api.errors import BEARER_CHALLENGE, error_response
from mlengine.config import Settings
from mlengine.domain.errors import FailedPrecondition, InvalidArgument, Unauthenticated

OPEN_PATHS = frozenset({"/healthz"})


class BearerTokens:
    """The accepted tokens, as SHA-256 digests."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._digests = tuple(_digest(t) for t in {t.strip() for t in tokens} if t)

    @classmethod
    def from_settings(cls, settings: Settings) -> BearerTokens:
        """Tokens of the settings and of the token file; a missing file is an error."""
        tokens = list(settings.auth_tokens)
        if settings.auth_tokens_file:
            tokens += read_token_file(Path(settings.auth_tokens_file).expanduser())
        return cls(tokens)

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def accepts(self, token: str) -> bool:
        presented = _digest(token)
        matched = False
        for digest in self._digests:  # no early exit: the time taken is the same for all
            matched |= hmac.compare_digest(presented, digest)
        return matched


def read_token_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidArgument(
            f"Cannot read the auth tokens file {path} (auth_tokens_file / "
            f"MLENGINE_AUTH_TOKENS_FILE): {exc.strerror or exc}.",
            field="auth_tokens_file",
        ) from None
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind_address(host: str, *, tokens: BearerTokens, insecure: bool) -> None:
    """Refuse a non-loopback ``host`` unless tokens are configured or ``insecure`` is set."""
    if is_loopback(host) or tokens.enabled or insecure:
        return
    raise FailedPrecondition(
        f"Refusing to listen on {host}: without authentication anyone who can reach this "
        "address could run code on this machine. Configure bearer tokens "
        "(MLENGINE_AUTH_TOKENS, or MLENGINE_AUTH_TOKENS_FILE with one token per line; "
        "auth_tokens / auth_tokens_file in the config file), or pass --insecure "
        "(MLENGINE_INSECURE=true) if the network is trusted.",
        field="--host",
    )


def presented_token(scope: Scope) -> str | None:
    """The bearer token of a request: the Authorization header, else ``access_token``."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get("access_token")
    return values[0] if values else None


class BearerAuthMiddleware:
    """Answers 401 for requests without an accepted token (when tokens are configured).

    It runs before routing, so unknown paths are not revealed to unauthenticated callers.
    """

    def __init__(self, app: ASGIApp, tokens: BearerTokens) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.tokens.enabled or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        token = presented_token(scope)
        if token and self.tokens.accepts(token):
            await self.app(scope, receive, send)
            return
        if token is None:
            error = Unauthenticated(
                "The request has no credentials: send 'Authorization: "
                "Bearer <token>' (the CLI and SDK send MLENGINE_TOKEN)."
            )
            challenge = BEARER_CHALLENGE
        else:
            error = Unauthenticated("The bearer token is not valid for this server.")
            challenge = f'{BEARER_CHALLENGE}, error="invalid_token"'
        response = error_response(error, headers={"WWW-Authenticate": challenge})
        await response(scope, receive, send)
