"""Model versions ("major.minor"): parsing, lookup, the newest and the next one."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from visionloop.runtime.errors import InvalidArgument, NotFound
from visionloop.server.hub.db import schema

_VERSION = re.compile(r"^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})$")


def parse_version(version: str, field: str = "version") -> tuple[int, int]:
    """(major, minor) of a "major.minor" version, or INVALID_ARGUMENT naming ``field``."""
    match = _VERSION.match(version)
    if match is None:
        raise InvalidArgument(f'{field} must look like "major.minor", e.g. "1.3", got {version!r}')
    return int(match[1]), int(match[2])


def find_model(session: Session, project: schema.Project, major: int, minor: int) -> schema.Model | None:
    return session.scalars(
        select(schema.Model).where(
            schema.Model.project_pk == project.pk, schema.Model.major == major, schema.Model.minor == minor
        )
    ).one_or_none()


def get_model(session: Session, project: schema.Project, version: str, field: str = "version") -> schema.Model:
    """The model of ``version`` or NOT_FOUND."""
    row = find_model(session, project, *parse_version(version, field))
    if row is None:
        raise NotFound(f"model version {version} does not exist in {project.organization}/{project.name}")
    return row


def latest_model(session: Session, project: schema.Project, *, promoted: bool = False) -> schema.Model | None:
    """The newest version of the project's model (only promoted ones if asked); None when there is none."""
    query = select(schema.Model).where(schema.Model.project_pk == project.pk)
    if promoted:
        query = query.where(schema.Model.promoted.is_(True))
    return session.scalars(query.order_by(schema.Model.major.desc(), schema.Model.minor.desc()).limit(1)).first()


def latest_version(session: Session, project: schema.Project, *, promoted: bool = False) -> str:
    """The newest version (only promoted ones if asked); empty when there is none."""
    newest = latest_model(session, project, promoted=promoted)
    return newest.version if newest else ""


def next_version(session: Session, project_pk: int, new_major: bool) -> tuple[int, int]:
    """1.0 first; then the next minor of the highest major, or the next major when asked."""
    major = session.scalar(select(func.max(schema.Model.major)).where(schema.Model.project_pk == project_pk))
    if major is None:
        return 1, 0
    if new_major:
        return major + 1, 0
    minor = session.scalar(
        select(func.max(schema.Model.minor)).where(schema.Model.project_pk == project_pk, schema.Model.major == major)
    )
    return major, (minor or 0) + 1


def version_formats(session: Session, project: schema.Project, version: str) -> list[str]:
    """Formats stored for ``version`` (empty when it does not exist), in upload order."""
    major, minor = parse_version(version)
    model = find_model(session, project, major, minor)
    if model is None:
        return []
    return list(
        session.scalars(
            select(schema.ModelArtifact.format)
            .where(schema.ModelArtifact.model_pk == model.pk)
            .order_by(schema.ModelArtifact.create_time, schema.ModelArtifact.format)
        )
    )
