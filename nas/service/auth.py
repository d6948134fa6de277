"""Bearer tokens with scopes: ``read`` < ``submit`` < ``admin`` (each includes the ones before it).

A token is shown once, when created; the database keeps only its SHA-256, so a leaked database grants
nothing. Requests carry ``Authorization: Bearer <token>``: none (or an unknown token) is 401, a token
without the scope the route needs is 403.
"""
from __future__ import annotations

import hashlib
import secrets

from nas.errors import ParamError
from nas.service.jobs import Store

SCOPES = ("read", "submit", "admin")
PREFIX = "nas_"


def hash_token(token: str) -> str:
    """The SHA-256 (hex) a token is stored and looked up by."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_scope(scope: str) -> str:
    """``scope`` when it is one of :data:`SCOPES`, else ParamError naming the allowed ones."""
    if scope not in SCOPES:
        raise ParamError("scope", f"{scope[:40]}: choose from {', '.join(SCOPES)}")
    return scope


MAX_LABEL = 200


def check_request(body: dict) -> tuple[str, str | None]:
    """The scope and label of a token request (``{"scope": ..., "label": ...}``), else ParamError naming the field."""
    unknown = sorted(set(body) - {"scope", "label"})
    if unknown:
        raise ParamError(str(unknown[0])[:40], ": unknown field; allowed: scope, label")
    scope = body.get("scope", "read")
    if not isinstance(scope, str):
        raise ParamError("scope", f"{type(scope).__name__}: expected a string ({', '.join(SCOPES)})")
    label = body.get("label")
    if label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL or not label.isprintable()):
        raise ParamError("label", f": expected a printable string of at most {MAX_LABEL} characters")
    return check_scope(scope), label


def create_token(store: Store, scope: str, label: str | None = None) -> tuple[str, str]:
    """Make a new token of ``scope``; returns (token id, the token itself - shown once, never stored)."""
    check_scope(scope)
    token = PREFIX + secrets.token_urlsafe(32)
    return store.add_token(hash_token(token), scope, label), token


def allows(held: str, needed: str) -> bool:
    """Whether a token of scope ``held`` may do what needs ``needed``."""
    return SCOPES.index(held) >= SCOPES.index(needed)


def lookup(store: Store, authorization: str | None) -> dict | None:
    """The token record of an ``Authorization`` header value, or None (missing, malformed, unknown, revoked)."""
    if not authorization:
        return None
    kind, _, token = authorization.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        return None
    return store.token_by_hash(hash_token(token.strip()))
