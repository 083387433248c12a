"""Bearer tokens: the roles each grants, the projects it is limited to, and the current call's caller.

``VISIONLOOP_AUTH_TOKENS`` is a comma-separated list of ``role[@organization[/project]]=token``
entries. The token is the secret itself or its digest ``sha256:<64 hex digits>``: a service only
needs the digest to recognise a token, so the list it is given holds no secret. A token may
appear in several entries and then holds each grant. ``@acme`` limits a grant to the projects of
organization ``acme``, ``@acme/weeds`` to that one project.

The auth interceptor finds the caller's grants and binds them to the call (a ``ContextVar``,
copied into ``asyncio.to_thread`` workers); code that resolves a project asks
``check_project`` whether the caller may use it. Outside an authenticated call (auth off,
background work) every project is allowed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from visionloop.runtime.errors import PermissionDenied

# The contract's roles (common/v1/access.proto), as they are written in VISIONLOOP_AUTH_TOKENS.
PEOPLE_ROLES = ("admin", "operator", "robot", "annotator")
NODE_ROLES = {
    "detector": "detector_node",
    "trainer": "trainer_node",
    "converter": "converter_node",
    "annotator": "annotator_node",
}
LEGACY_NODE_ROLE = "node"  # every node kind's RPCs at once; kept so existing configurations work
ROLES = (*PEOPLE_ROLES, *NODE_ROLES.values(), LEGACY_NODE_ROLE)

_NAME = r"[a-z0-9][a-z0-9_-]{0,63}"
_ENTRY = re.compile(rf"^(?P<role>[a-z_]+)(?:@(?P<organization>{_NAME})(?:/(?P<project>{_NAME}))?)?=(?P<secret>\S+)$")
_DIGEST = re.compile(r"^sha256:(?P<hex>[0-9a-f]{64})$")


def digest(token: str) -> bytes:
    """The sha256 a token is recognised by (tokens are long random strings: no salt or stretching needed)."""
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Scope:
    """One organization, or one project of it."""

    organization: str
    project: str | None = None

    def covers(self, organization: str, project: str) -> bool:
        return organization == self.organization and self.project in (None, project)

    def __str__(self) -> str:
        return f"{self.organization}/{self.project}" if self.project else f"organization {self.organization}"


@dataclass(frozen=True)
class Grant:
    """One entry of ``VISIONLOOP_AUTH_TOKENS``: a role for the token with this digest, maybe limited."""

    role: str
    digest: bytes
    scope: Scope | None = None


def parse_tokens(value: str) -> tuple[Grant, ...]:
    """The grants of a ``VISIONLOOP_AUTH_TOKENS`` value. ValueError names the bad entry by position,
    never by its text: the text holds a secret."""
    grants = []
    for position, entry in enumerate(filter(None, (e.strip() for e in value.split(","))), start=1):
        match = _ENTRY.match(entry)
        if not match:
            raise ValueError(
                f"entry {position} is not role=token, role@organization=token or role@organization/project=token"
            )
        role = match["role"]
        if role not in ROLES:
            raise ValueError(f"entry {position}: unknown role {role!r}; roles are {', '.join(ROLES)}")
        secret = match["secret"]
        hashed = _DIGEST.match(secret)
        if secret.startswith("sha256:") and not hashed:
            raise ValueError(f"entry {position}: a digest is sha256: and 64 lower-case hex digits")
        organization = match["organization"]
        scope = Scope(organization, match["project"]) if organization else None
        grants.append(Grant(role, bytes.fromhex(hashed["hex"]) if hashed else digest(secret), scope))
    return tuple(grants)


def token_entry(role: str, token: str, scope: Scope | None = None) -> str:
    """The ``VISIONLOOP_AUTH_TOKENS`` entry that accepts ``token`` for ``role`` by its digest only."""
    where = ""
    if scope is not None:
        where = f"@{scope.organization}" + (f"/{scope.project}" if scope.project else "")
    return f"{role}{where}=sha256:{digest(token).hex()}"


@dataclass(frozen=True)
class Caller:
    """Who makes the current call: the roles that let it in, and where it may act (None: everywhere)."""

    roles: tuple[str, ...]
    scopes: tuple[Scope, ...] | None

    @classmethod
    def of(cls, grants: Iterable[Grant]) -> Caller:
        grants = tuple(grants)
        roles = tuple(dict.fromkeys(g.role for g in grants))
        if any(g.scope is None for g in grants):
            return cls(roles, None)
        return cls(roles, tuple(dict.fromkeys(g.scope for g in grants if g.scope is not None)))

    def may_use(self, organization: str, project: str) -> bool:
        return self.scopes is None or any(s.covers(organization, project) for s in self.scopes)

    def limits(self) -> str:
        return " and ".join(str(s) for s in self.scopes or ())


class Tokens:
    """The accepted tokens of one service."""

    def __init__(self, grants: Iterable[Grant]) -> None:
        self.grants = tuple(grants)

    def __bool__(self) -> bool:
        return bool(self.grants)

    def grants_of(self, presented: str) -> list[Grant]:
        """The grants of ``presented``; compared with every digest, so the time taken says nothing."""
        wanted = digest(presented)
        return [g for g in self.grants if hmac.compare_digest(g.digest, wanted)]

    def roles(self) -> frozenset[str]:
        return frozenset(g.role for g in self.grants)


_CALLER: ContextVar[Caller | None] = ContextVar("visionloop_caller", default=None)


@contextmanager
def acting_as(caller: Caller) -> Iterator[None]:
    """Bind ``caller`` to the code run inside (the auth interceptor, around each call)."""
    token = _CALLER.set(caller)
    try:
        yield
    finally:
        _CALLER.reset(token)


def current_caller() -> Caller | None:
    return _CALLER.get()


def may_use(organization: str, project: str) -> bool:
    """Whether the current caller may act in ``organization/project``; for filtering lists."""
    caller = _CALLER.get()
    return caller is None or caller.may_use(organization, project)


def check_project(organization: str, project: str) -> None:
    """PERMISSION_DENIED unless the current caller's token may act in ``organization/project``."""
    caller = _CALLER.get()
    if caller is not None and not caller.may_use(organization, project):
        raise PermissionDenied(f"this token is limited to {caller.limits()}; it may not use {organization}/{project}")


def check_every_project(field: str) -> None:
    """PERMISSION_DENIED for a limited token asking about every project: it must name its project in ``field``."""
    caller = _CALLER.get()
    if caller is not None and caller.scopes is not None:
        raise PermissionDenied(f"this token is limited to {caller.limits()}; name the project in {field}")
