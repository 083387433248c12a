"""The hub's database layer, without gRPC: group commit (SQLite), pooled connections (PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from tests.hub.conftest import cluster_storage
from visionloop.server.hub.db import engine as engine_module
from visionloop.server.hub.db import schema
from visionloop.server.hub.db.engine import Database
from visionloop.server.hub.state import utcnow


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'loop.db'}")
    database.migrate()
    yield database
    database.close()


def add_project(name: str, fail: bool = False) -> Callable[[Session], str]:
    def fn(session: Session) -> str:
        session.add(
            schema.Project(organization="o", name=name, display_name=name, description="", create_time=utcnow())
        )
        session.flush()
        if fail:  # after a write, which must not survive
            raise ValueError(f"{name} failed")
        return name

    return fn


def project_names(db: Database) -> set[str]:
    return set(db.read_sync(lambda s: s.scalars(select(schema.Project.name)).all()))


def test_a_group_commits_together(db: Database) -> None:
    outcomes = db.write_many_sync([add_project("a"), add_project("b")])
    assert outcomes == [(True, "a"), (True, "b")]
    assert project_names(db) == {"a", "b"}


def test_a_failing_member_fails_alone(db: Database) -> None:
    outcomes = db.write_many_sync([add_project("a"), add_project("b", fail=True), add_project("c")])
    assert [ok for ok, _ in outcomes] == [True, False, True]
    assert isinstance(outcomes[1][1], ValueError)
    assert project_names(db) == {"a", "c"}


def test_a_failing_group_of_one_leaves_nothing(db: Database) -> None:
    [(ok, error)] = db.write_many_sync([add_project("a", fail=True)])
    assert not ok
    assert isinstance(error, ValueError)
    assert project_names(db) == set()


async def test_write_grouped_answers_every_caller(db: Database) -> None:
    names = [f"p{i}" for i in range(20)]
    results = await asyncio.gather(
        *(db.write_grouped(add_project(name, fail=name.endswith("7"))) for name in names), return_exceptions=True
    )
    assert [isinstance(r, ValueError) for r in results] == [name.endswith("7") for name in names]
    assert project_names(db) == {name for name in names if not name.endswith("7")}


class Named:
    """A batchable write: adds a project; ``run_together`` adds a group of them with one flush."""

    calls: ClassVar[list[list[str]]] = []

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, session: Session) -> str:
        return self.run_together(session, [self])[0]

    @staticmethod
    def run_together(session: Session, items: list[Named]) -> list[str]:
        Named.calls.append([item.name for item in items])
        session.add_all(
            schema.Project(organization="o", name=i.name, display_name="", description="", create_time=utcnow())
            for i in items
        )
        session.flush()
        return [f"together:{item.name}" for item in items]


def test_batchable_writes_run_together_and_answer_in_order(db: Database) -> None:
    Named.calls = []
    outcomes = db.write_many_sync([Named("a"), add_project("b"), Named("c"), Named("d")])
    assert outcomes == [(True, "together:a"), (True, "b"), (True, "together:c"), (True, "together:d")]
    assert Named.calls == [["a", "c", "d"]]  # one set-based call for the three
    assert project_names(db) == {"a", "b", "c", "d"}


def test_a_failing_group_runs_batchable_writes_alone(db: Database) -> None:
    Named.calls = []
    outcomes = db.write_many_sync([Named("a"), add_project("b", fail=True), Named("c")])
    assert [ok for ok, _ in outcomes] == [True, False, True]
    assert Named.calls[-2:] == [["a"], ["c"]]  # after the rolled-back attempt, each alone
    assert project_names(db) == {"a", "c"}


def test_sqlite_commits_reach_the_disk_before_the_hub_answers(db: Database) -> None:
    """synchronous=FULL (2): under NORMAL a WAL commit can roll back on a power cut, after the hub
    answered and a robot deleted its copy of the image."""
    modes = db.read_sync(
        lambda s: (s.execute(text("PRAGMA synchronous")).scalar(), s.execute(text("PRAGMA journal_mode")).scalar())
    )
    assert modes == (2, "wal")


@pytest.fixture
def postgres_db(request: pytest.FixtureRequest) -> Iterator[Database]:
    """A fresh database on the tests' PostgreSQL server, its connections named ``engine-test``."""
    database = Database(cluster_storage(request)["database_url"] + "?application_name=engine-test")
    database.migrate()
    yield database
    database.close()


def select_one(db: Database) -> int:
    return int(db.read_sync(lambda s: s.scalar(text("SELECT 1"))))


def count_pings(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The real ping, counted."""
    pings: list[int] = []
    ping = db.engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(1)
        return ping(dbapi_connection)

    monkeypatch.setattr(db.engine.dialect, "do_ping", counted)
    return pings


def test_a_connection_the_server_dropped_is_replaced_before_use(
    postgres_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL restarted, a proxy timed the connection out: the pool's idle connection is dead."""
    assert select_one(postgres_db) == 1  # one connection now waits in the pool
    with psycopg.connect(postgres_db.url.split("?")[0]) as admin:  # outside the pool
        dropped = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'engine-test'"
        ).fetchone()
    assert dropped == (1,)
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_S", 0.0)  # the pool's connection counts as idle
    assert select_one(postgres_db) == 1
    assert project_names(postgres_db) == set()


def test_a_connection_used_just_now_is_not_pinged(postgres_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under load the write connection is back in the pool many times a second: no round trip each time."""
    pings = count_pings(postgres_db, monkeypatch)
    for name in ("a", "b", "c"):
        postgres_db.write_sync(add_project(name))
    assert project_names(postgres_db) == {"a", "b", "c"}
    assert len(pings) == 0
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_S", 0.0)
    select_one(postgres_db)
    assert len(pings) == 1
