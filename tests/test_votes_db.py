"""The vote store on SQLite and on a real PostgreSQL (IMAGINE_TEST_POSTGRES_URL).

Every store test runs on both backends. Each PostgreSQL test gets a fresh schema (search_path
set through the URL) that is dropped afterwards, so runs never see each other's rows.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import OperationalError

from bot.votes.db import PENDING_KEEP, ModelRef, VoteStore, history_entry, normalise_url
from bot.votes.history import HistoryWriter
from bot.votes.schema import (
    EVENTS,
    GENERATIONS,
    MIGRATIONS,
    PENDING_REACTIONS,
    VOTES,
    Migration,
    object_ref,
)
from tests.services import postgres_schema

POSITIONS = {
    "A": {"provider": "imagen", "model": "gemini-image"},
    "B": {"provider": "dalle3", "model": "gpt-image"},
}


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A database URL nobody else uses: a tmp SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'votes.db'}"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def store(backend_url: str) -> Iterator[VoteStore]:
    vote_store = VoteStore(backend_url)
    yield vote_store
    vote_store.close()


def ts(n: int) -> str:
    return f"1700000000.{n:06d}"


# --- URLs, schema, migrations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgresql://u@h/db?sslmode=require", "postgresql+psycopg://u@h/db?sslmode=require"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///imagine.db", "sqlite:///imagine.db"),
    ],
)
def test_normalise_url(url: str, expected: str) -> None:
    assert normalise_url(url) == expected


def test_schema_is_created_at_the_latest_version(store: VoteStore) -> None:
    names = set(inspect(store.engine).get_table_names())
    assert {
        "schema_version",
        "generations",
        "comparisons",
        "rated_posts",
        "reaction_events",
        "votes",
        "deliveries",
        "uploads",
        "pending_reactions",
        "job_board",
        "spend",
        "budget_alerts",
    } <= names
    assert store.schema_version() == len(MIGRATIONS) == 11
    assert store.migrate() == []  # nothing left to apply


def test_a_postgresql_server_that_never_answers_fails_in_seconds() -> None:
    """A dead host accepts nothing and refuses nothing: connecting must not wait forever
    (libpq's default), or every request waiting on the database would hang with it."""
    with socket.socket() as silent:  # accepts connections (the kernel does), never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(OperationalError):
            VoteStore(f"postgresql://postgres@127.0.0.1:{port}/imagine")
        assert time.monotonic() - started < 8


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path) -> None:
    store = VoteStore(f"sqlite:///{tmp_path / 'wal.db'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
    store.close()


NEXT = len(MIGRATIONS) + 1  # a migration the project does not have yet


def test_a_version_1_database_is_upgraded_once(backend_url: str) -> None:
    VoteStore(backend_url, migrations=MIGRATIONS[:1]).close()  # a database at version 1
    calls: list[int] = []

    def add_note(conn) -> None:
        calls.append(NEXT)
        conn.execute(text("ALTER TABLE comparisons ADD COLUMN note VARCHAR(100)"))

    migrations = (*MIGRATIONS, Migration(NEXT, "comparison notes", add_note))
    upgraded = VoteStore(backend_url, migrations=migrations)
    assert upgraded.schema_version() == NEXT
    assert calls == [NEXT]
    cid = upgraded.register_comparison("C1", ts(1), "U1", "a fox", POSITIONS, {"mode": "x"})
    assert upgraded.comparison(cid).details == {"mode": "x"}  # migration 2's column
    with upgraded.engine.begin() as conn:
        conn.execute(text("UPDATE comparisons SET note = 'kept'"))
        assert conn.execute(text("SELECT note FROM comparisons")).scalar() == "kept"
    upgraded.close()

    again = VoteStore(backend_url, migrations=migrations)  # second start: nothing reapplied
    assert again.migrate(migrations) == []
    assert calls == [NEXT]
    with again.engine.connect() as conn:
        rows = conn.execute(text("SELECT version FROM schema_version ORDER BY version")).all()
    assert [r[0] for r in rows] == list(range(1, NEXT + 1))
    again.close()


SIGNED_V4 = (
    "https://storage.googleapis.com/imgs/2026/11/01/{name}.png?X-Goog-Algorithm=GOOG4-RSA-SHA256"
    "&X-Goog-Credential=imagine%40p.iam.gserviceaccount.com%2F20261101%2Fauto%2Fstorage%2F"
    "goog4_request&X-Goog-Date=20261101T101010Z&X-Goog-Expires=604800"
    "&X-Goog-SignedHeaders=host&X-Goog-Signature=0badc0ffee"
)


@pytest.mark.parametrize(
    ("url", "ref"),
    [
        (SIGNED_V4.format(name="a"), "gs://imgs/2026/11/01/a.png"),
        (  # an emulator's host, a prefix, a quoted name
            "http://127.0.0.1:9023/imgs/team/x%20y.jpg?X-Goog-Algorithm=GOOG4-RSA-SHA256"
            "&X-Goog-Signature=abc",
            "gs://imgs/team/x y.jpg",
        ),
        (
            "https://storage.googleapis.com/imgs/a.png?GoogleAccessId=x%40y&Expires=1&Signature=s",
            "gs://imgs/a.png",
        ),
        ("https://imgs.storage.googleapis.com/a/b.png?X-Goog-Signature=s", "gs://imgs/a/b.png"),
        ("https://storage.googleapis.com/imgs/public.png", "gs://imgs/public.png"),
        ("https://acct.blob.core.windows.net/c/i.png?sv=1&sig=s", None),  # not ours to renew
        ("http://127.0.0.1:9023/imgs/public.png", None),  # an emulator's public URL
        ("https://storage.googleapis.com/?X-Goog-Signature=s", "https://storage.googleapis.com/"),
    ],
)
def test_object_ref_of_cloud_storage_urls(url: str, ref: str | None) -> None:
    assert object_ref(url) == (url if ref is None else ref)


def test_migration_5_keeps_object_names_instead_of_signed_urls(backend_url: str) -> None:
    old = VoteStore(backend_url, migrations=MIGRATIONS[:4])  # a database at version 4
    azure = "https://acct.blob.core.windows.net/c/i.png?sv=1&sig=s"
    post = {
        "prompt": "a fox",
        "pictures": [SIGNED_V4.format(name="pair")],
        "originals": {"A": [SIGNED_V4.format(name="a")], "B": [azure]},
        "models": {},
        "requester": "U1",
        "seconds": 1.0,
        "reveal_after": 3,
    }
    uploaded = {**post, "pictures": [], "originals": {}}
    details = [
        {"mode": "blocks", "post": post},
        {"mode": "blocks", "view": post},  # rows before 2026-11 kept a "view"
        {"mode": "file", "post": uploaded},
        {},
    ]
    with old.engine.begin() as conn:  # as the version-4 code wrote them
        for n, kept in enumerate(details, start=1):
            conn.execute(
                text(
                    "INSERT INTO comparisons (id, created_at, channel_id, message_ts, "
                    "requester_id, prompt, positions, revealed, details) VALUES "
                    "(:n, :now, 'C1', :ts, 'U1', 'a fox', :positions, false, :details)"
                ),
                {"n": n, "now": datetime.now(UTC), "ts": ts(n), "positions": json.dumps(POSITIONS),
                 "details": json.dumps(kept)},
            )  # fmt: skip
    signed, legacy, uploaded, empty = 1, 2, 3, 4
    old.close()

    store = VoteStore(backend_url)
    assert store.schema_version() == len(MIGRATIONS)
    for cid, key in ((signed, "post"), (legacy, "view")):
        kept = store.comparison(cid).details[key]
        assert kept["pictures"] == ["gs://imgs/2026/11/01/pair.png"]
        assert kept["originals"] == {"A": ["gs://imgs/2026/11/01/a.png"], "B": [azure]}
        assert kept["prompt"] == "a fox" and kept["reveal_after"] == 3
    assert store.comparison(uploaded).details["post"]["pictures"] == []
    assert store.comparison(empty).details == {}
    with store.engine.connect() as conn:
        assert "X-Goog-" not in str(conn.execute(text("SELECT details FROM comparisons")).all())
    store.close()


def test_two_stores_starting_at_once_migrate_exactly_once(backend_url: str) -> None:
    barrier = threading.Barrier(6)
    calls: list[int] = []
    lock = threading.Lock()

    def counted(conn) -> None:
        with lock:
            calls.append(1)
        MIGRATIONS[0].apply(conn)

    migrations = (Migration(1, "create tables", counted),)

    def start() -> int:
        barrier.wait()
        store = VoteStore(backend_url, migrations=migrations)
        version = store.schema_version()
        store.close()
        return version

    with ThreadPoolExecutor(6) as pool:
        versions = list(pool.map(lambda _: start(), range(6)))
    assert versions == [1] * 6
    assert calls == [1]


# --- comparisons, rated posts, generations ---------------------------------------------------


def test_register_comparison_is_idempotent_and_found_by_message(store: VoteStore) -> None:
    first = store.register_comparison("C1", ts(1), "U1", "a red fox", POSITIONS)
    again = store.register_comparison("C1", ts(1), "U1", "a red fox", POSITIONS)
    assert first == again
    found = store.comparison_at("C1", ts(1))
    assert found is not None and found.id == first
    assert found.positions == {
        "A": ModelRef("imagen", "gemini-image"),
        "B": ModelRef("dalle3", "gpt-image"),
    }
    assert (found.requester_id, found.prompt, found.revealed) == ("U1", "a red fox", False)
    assert found.created_at.tzinfo is not None
    assert store.comparison_at("C1", ts(2)) is None
    assert store.comparison_at("C2", ts(1)) is None


def test_comparison_needs_two_positions(store: VoteStore) -> None:
    with pytest.raises(ValueError):
        store.register_comparison("C1", ts(1), "U1", "p", {"A": POSITIONS["A"]})


def test_mark_revealed_flips_once_under_concurrency(store: VoteStore) -> None:
    cid = store.register_comparison("C1", ts(1), "U1", "p", POSITIONS)
    barrier = threading.Barrier(16)

    def reveal(_: int) -> bool:
        barrier.wait()
        return store.mark_revealed(cid)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(reveal, range(16)))
    assert results.count(True) == 1
    comparison = store.comparison(cid)
    assert comparison is not None and comparison.revealed and comparison.revealed_at is not None


def test_record_generation_round_trips(store: VoteStore) -> None:
    gid = store.record_generation(
        user_id="U1",
        channel_id="C1",
        prompt="a lighthouse",
        provider="imagen",
        model="gemini-image",
        options={"n": 2, "size": "1024x1024"},
        timings={"provider": 3.5, "store": 0.25},
        outcome="ok",
        image_urls=["https://img/1.png", "https://img/2.png"],
        request_id="req-1",
    )
    store.set_generation_message(gid, ts(9))
    (row,) = store.generations("req-1")
    assert row["id"] == gid
    assert row["options"] == {"n": 2, "size": "1024x1024"}
    assert row["timings"] == {"provider": 3.5, "store": 0.25}
    assert row["image_urls"] == ["https://img/1.png", "https://img/2.png"]
    assert (row["outcome"], row["message_ts"], row["model"]) == ("ok", ts(9), "gemini-image")


# --- the vote rule ----------------------------------------------------------------------------


def test_vote_change_and_withdraw(store: VoteStore) -> None:
    cid = store.register_comparison("C1", ts(0), "U1", "p", POSITIONS)
    react = store.apply_reaction
    change = react("Ev1", "C1", ts(0), "V1", "A", True, ts(1))
    assert (change.choice, change.previous, change.duplicate, change.vote_count) == (
        "A",
        None,
        False,
        1,
    )
    assert change.target_id == cid and change.changed
    change = react("Ev2", "C1", ts(0), "V1", "B", True, ts(2))  # a new choice replaces
    assert (change.choice, change.previous, change.vote_count) == ("B", "A", 1)
    change = react("Ev3", "C1", ts(0), "V1", "A", False, ts(3))  # removing the old one: no-op
    assert (change.choice, change.changed) == ("B", False)
    change = react("Ev4", "C1", ts(0), "V1", "B", False, ts(4))  # removing the current: gone
    assert (change.choice, change.previous, change.vote_count) == (None, "B", 0)
    assert store.votes(cid) == {}
    change = react("Ev5", "C1", ts(0), "V2", "tie", True, ts(5))
    react("Ev6", "C1", ts(0), "V3", "both_bad", True, ts(6))
    assert store.votes(cid) == {"V2": "tie", "V3": "both_bad"}
    assert store.vote_count(cid) == 2


def test_duplicate_delivery_changes_nothing(store: VoteStore) -> None:
    cid = store.register_comparison("C1", ts(0), "U1", "p", POSITIONS)
    store.apply_reaction("Ev1", "C1", ts(0), "V1", "A", True, ts(1))
    store.apply_reaction("Ev2", "C1", ts(0), "V1", "A", False, ts(2))
    retry = store.apply_reaction("Ev1", "C1", ts(0), "V1", "A", True, ts(1))
    assert retry.duplicate and retry.choice is None and retry.vote_count == 0
    assert store.vote_count(cid) == 0
    with store.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(EVENTS)) == 2


def test_out_of_order_arrival_converges_on_event_time_order(store: VoteStore) -> None:
    cid = store.register_comparison("C1", ts(0), "U1", "p", POSITIONS)
    # Slack order: add A (t1), add B (t2), remove B (t3). They arrive reversed.
    store.apply_reaction("Ev3", "C1", ts(0), "V1", "B", False, ts(3))
    assert store.votes(cid) == {}
    store.apply_reaction("Ev2", "C1", ts(0), "V1", "B", True, ts(2))
    assert store.votes(cid) == {}  # B was removed after it was added
    last = store.apply_reaction("Ev1", "C1", ts(0), "V1", "A", True, ts(1))
    # Replay: A, then B replaces A, then B removed -> no vote (A was superseded, not restored).
    assert last.choice is None and store.votes(cid) == {}
    store.apply_reaction("Ev4", "C1", ts(0), "V1", "A", True, ts(4))
    assert store.votes(cid) == {"V1": "A"}


def test_event_ts_is_compared_as_a_number_not_text(store: VoteStore) -> None:
    cid = store.register_comparison("C1", ts(0), "U1", "p", POSITIONS)
    store.apply_reaction("Ev-late", "C1", ts(0), "V1", "B", True, "10.5")
    store.apply_reaction("Ev-early", "C1", ts(0), "V1", "A", True, "9.5")  # "9.5" > "10.5" as text
    assert store.votes(cid) == {"V1": "B"}


def test_hidden_records_whether_names_were_hidden_when_the_deciding_add_arrived(
    store: VoteStore,
) -> None:
    cid = store.register_comparison("C1", ts(0), "U1", "p", POSITIONS)
    before = store.apply_reaction("Ev1", "C1", ts(0), "V1", "A", True, ts(1))
    assert before.hidden is True
    store.mark_revealed(cid)
    after = store.apply_reaction("Ev2", "C1", ts(0), "V2", "B", True, ts(2))
    assert after.hidden is False
    # V1's later removal of a superseded reaction keeps the blind vote blind.
    kept = store.apply_reaction("Ev3", "C1", ts(0), "V1", "B", False, ts(3))
    assert (kept.choice, kept.hidden) == ("A", True)
    # V1 changes the vote after the reveal: the deciding event is no longer blind.
    changed = store.apply_reaction("Ev4", "C1", ts(0), "V1", "B", True, ts(4))
    assert (changed.choice, changed.hidden) == ("B", False)
    explicit = store.apply_reaction("Ev5", "C1", ts(0), "V3", "A", True, ts(5), hidden=True)
    assert explicit.hidden is True
    with store.engine.connect() as conn:
        rows = dict(conn.execute(select(VOTES.c.voter_id, VOTES.c.hidden)).all())
    assert {k: bool(v) for k, v in rows.items()} == {"V1": False, "V2": False, "V3": True}


def test_cast_at_is_when_the_deciding_event_arrived(store: VoteStore) -> None:
    store.register_comparison("C1", ts(0), "U1", "p", POSITIONS)
    when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    store.apply_reaction("Ev1", "C1", ts(0), "V1", "A", True, ts(1), received_at=when)
    later = when + timedelta(days=2)
    store.apply_reaction("Ev2", "C1", ts(0), "V1", "B", False, ts(2), received_at=later)
    with store.engine.connect() as conn:
        cast_at = conn.scalar(select(VOTES.c.cast_at))
    cast_at = cast_at if cast_at.tzinfo else cast_at.replace(tzinfo=UTC)
    assert cast_at == when


def test_thumbs_on_rated_posts(store: VoteStore) -> None:
    pid = store.register_rated_post("C1", ts(1), "imagen", "gemini-image", "U1")
    assert store.register_rated_post("C1", ts(1), "imagen", "gemini-image", "U1") == pid
    post = store.rated_post_at("C1", ts(1))
    assert post is not None and (post.id, post.model, post.provider) == (
        pid,
        "gemini-image",
        "imagen",
    )
    up = store.apply_reaction("Ev1", "C1", ts(1), "V1", "up", True, ts(2))
    assert (up.target, up.choice, up.vote_count, up.hidden) == ("rated_post", "up", 1, False)
    down = store.apply_reaction("Ev2", "C1", ts(1), "V1", "down", True, ts(3))
    assert (down.choice, down.previous, down.vote_count) == ("down", "up", 1)
    with pytest.raises(ValueError):
        store.apply_reaction("Ev3", "C1", ts(1), "V1", "A", True, ts(4))


def test_reactions_on_unknown_messages_and_choices(store: VoteStore) -> None:
    store.register_comparison("C1", ts(0), "U1", "p", POSITIONS)
    assert store.apply_reaction("Ev1", "C1", ts(99), "V1", "A", True, ts(1)) is None
    with pytest.raises(ValueError):
        store.apply_reaction("Ev2", "C1", ts(0), "V1", "C", True, ts(2))  # no position C
    with pytest.raises(ValueError):
        store.apply_reaction("Ev3", "C1", ts(0), "V1", "up", True, ts(3))
    with pytest.raises(ValueError):
        store.apply_reaction("Ev4", "C1", ts(0), "V1", "A", True, "yesterday")
    with store.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(EVENTS)) == 0


# --- reactions that arrive before their post is registered ----------------------------------


def pending_count(store: VoteStore) -> int:
    with store.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(PENDING_REACTIONS))


def test_reactions_before_the_comparison_is_registered_count_once_it_is(store: VoteStore) -> None:
    early = [  # (event_id, voter, choice, added, event_ts), on the bot's post not registered yet
        ("Ev1", "V1", "A", True, ts(1)),
        ("Ev2", "V2", "B", True, ts(2)),
        ("Ev3", "V1", "B", True, ts(3)),  # V1 changes their mind
        ("Ev4", "V3", "tie", True, ts(4)),
        ("Ev5", "V3", "tie", False, ts(5)),  # ...and V3 withdraws
        ("Ev6", "V4", "up", True, ts(6)),  # a thumb is no vote on a comparison
    ]
    for event_id, voter, choice, added, event_ts in [*early, early[1]]:  # Ev2 redelivered
        kept = store.apply_reaction(
            event_id, "C1", ts(0), voter, choice, added, event_ts, keep_if_unknown=True
        )
        assert kept is None
    assert store.apply_reaction("Ev7", "C1", ts(99), "V5", "A", True, ts(7)) is None  # not ours
    assert pending_count(store) == 6

    cid = store.register_comparison("C1", ts(0), "U1", "p", POSITIONS)
    assert store.votes(cid) == {"V1": "B", "V2": "B"}
    assert pending_count(store) == 0
    late = store.apply_reaction("Ev8", "C1", ts(0), "V2", "A", True, ts(8), keep_if_unknown=True)
    assert (late.previous, late.choice, late.vote_count) == ("B", "A", 2)
    again = store.apply_reaction("Ev2", "C1", ts(0), "V2", "B", True, ts(2), keep_if_unknown=True)
    assert again.duplicate and store.votes(cid) == {"V1": "B", "V2": "A"}
    with store.engine.connect() as conn:
        hidden = conn.execute(select(VOTES.c.voter_id, VOTES.c.hidden)).all()
    assert dict(hidden) == {"V1": True, "V2": True}  # cast while the names were hidden
    assert store.register_comparison("C1", ts(0), "U1", "p", POSITIONS) == cid


def test_thumbs_before_a_rated_post_is_registered_count_once_it_is(store: VoteStore) -> None:
    for n, (voter, choice) in enumerate((("V1", "up"), ("V2", "down"), ("V3", "A")), start=1):
        store.apply_reaction(
            f"Ev{n}", "C1", ts(1), voter, choice, True, ts(n + 1), keep_if_unknown=True
        )
        store.apply_reaction(
            f"Eu{n}", "C1", ts(2), voter, choice, True, ts(n + 1), keep_if_unknown=True
        )
    # the history writer registers single posts in batches, a moment after they are posted
    fields = {"user_id": "U1", "channel_id": "C1", "prompt": "p", "provider": "imagen",
              "model": "gemini-image", "options": {}, "timings": {}, "outcome": "ok",
              "image_urls": [], "request_id": "r1", "rated": True}  # fmt: skip
    store.write_history([history_entry(**fields, message_ts=ts(1))])
    post = store.rated_post_at("C1", ts(1))
    with store.engine.connect() as conn:
        votes = conn.execute(
            select(VOTES.c.voter_id, VOTES.c.choice).where(VOTES.c.rated_post_id == post.id)
        ).all()
    assert dict(votes) == {"V1": "up", "V2": "down"}  # the letter was no vote here
    assert pending_count(store) == 3  # the other message's thumbs still wait
    # an upload matched with its message later
    store.write_history([history_entry(**fields, upload_file_id="F1")])
    [upload] = store.pending_uploads("C1")
    store.resolve_upload(upload, ts(2))
    assert store.apply_reaction("Ew", "C1", ts(2), "V9", "up", True, ts(9)).vote_count == 3
    assert pending_count(store) == 0


def test_reactions_kept_too_long_are_forgotten(store: VoteStore) -> None:
    old = datetime.now(UTC) - PENDING_KEEP - timedelta(minutes=1)
    store.apply_reaction(
        "Ev1", "C1", ts(1), "V1", "A", True, ts(1), received_at=old, keep_if_unknown=True
    )
    store.apply_reaction("Ev2", "C1", ts(2), "V1", "A", True, ts(2), keep_if_unknown=True)
    assert pending_count(store) == 1
    cid = store.register_comparison("C1", ts(2), "U1", "p", POSITIONS)
    assert store.votes(cid) == {"V1": "A"}


def test_reactions_racing_the_registration_all_count(store: VoteStore) -> None:
    """200 deliveries from 32 threads on a post that is registered while they arrive: each
    is counted, whether it came before the registration, after it, or at the same moment."""
    events = burst_events(seed=3, voters=40, unique=160)
    rng = random.Random(5)
    deliveries = events + rng.sample(events, 40)
    rng.shuffle(deliveries)
    barrier = threading.Barrier(33)
    registered: list[int] = []

    def deliver(chunk: list[dict]) -> None:
        barrier.wait()
        for e in chunk:
            store.apply_reaction(
                e["event_id"], "C1", ts(0), e["voter"], e["choice"], e["added"], e["event_ts"],
                keep_if_unknown=True,
            )  # fmt: skip

    def register() -> None:
        barrier.wait()
        time.sleep(0.05)  # some reactions first
        registered.append(store.register_comparison("C1", ts(0), "U1", "p", POSITIONS))

    with ThreadPoolExecutor(33) as pool:
        futures = [pool.submit(deliver, deliveries[i::32]) for i in range(32)]
        futures.append(pool.submit(register))
        for future in futures:
            future.result()
    [cid] = registered
    assert store.votes(cid) == expected_votes(events)
    assert pending_count(store) == 0
    with store.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(EVENTS)) == 160


# --- the burst --------------------------------------------------------------------------------


def burst_events(seed: int, voters: int, unique: int) -> list[dict]:
    """Realistic reaction traffic: each voter adds and removes emoji they have or lack."""
    rng = random.Random(seed)
    present: dict[str, set[str]] = {f"V{i}": set() for i in range(voters)}
    events = []
    for n in range(unique):
        voter = rng.choice(sorted(present))
        have = present[voter]
        if have and rng.random() < 0.35:
            choice, added = rng.choice(sorted(have)), False
            have.discard(choice)
        else:
            choice, added = rng.choice(["A", "B", "tie", "both_bad"]), True
            have.add(choice)
        events.append(
            {"event_id": f"Ev{n:04d}", "voter": voter, "choice": choice, "added": added,
             "event_ts": ts(n + 1)}
        )  # fmt: skip
    return events


def expected_votes(events: list[dict]) -> dict[str, str]:
    """The rule, written out independently: replay each voter's events in Slack's order."""
    current: dict[str, str | None] = {}
    for e in sorted(events, key=lambda e: (Decimal(e["event_ts"]), e["event_id"])):
        if e["added"]:
            current[e["voter"]] = e["choice"]
        elif current.get(e["voter"]) == e["choice"]:
            current[e["voter"]] = None
    return {voter: choice for voter, choice in current.items() if choice is not None}


def test_burst_of_200_reactions_from_32_threads(store: VoteStore) -> None:
    cid = store.register_comparison("C1", ts(0), "U1", "the burst", POSITIONS)
    events = burst_events(seed=7, voters=40, unique=160)
    rng = random.Random(11)
    deliveries = events + rng.sample(events, 40)  # 40 Slack retries of the same event_id
    rng.shuffle(deliveries)  # arrival order is not event order
    assert len(deliveries) == 200
    barrier = threading.Barrier(32)
    chunks = [deliveries[i::32] for i in range(32)]

    def deliver(chunk: list[dict]) -> list:
        barrier.wait()
        return [
            store.apply_reaction(
                e["event_id"], "C1", ts(0), e["voter"], e["choice"], e["added"], e["event_ts"]
            )
            for e in chunk
        ]

    started = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        changes = [c for chunk in pool.map(deliver, chunks) for c in chunk]
    elapsed = time.perf_counter() - started
    print(f"\n{store.url.split(':')[0]}: 200 reactions from 32 threads in {elapsed:.2f} s")

    assert len(changes) == 200 and all(c is not None for c in changes)
    assert sum(c.duplicate for c in changes) == 40
    want = expected_votes(events)
    assert store.votes(cid) == want
    assert store.vote_count(cid) == len(want)
    with store.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(EVENTS)) == 160
        doubled = conn.execute(
            select(VOTES.c.voter_id).group_by(VOTES.c.voter_id).having(func.count() > 1)
        ).all()
    assert doubled == []
    tally = Counter(want.values())
    assert sum(tally.values()) == len(want) and len(want) > 10  # the burst left real votes
    assert elapsed < 20, "the burst should take about a second; something serialised badly"


def test_a_reader_holding_a_transaction_does_not_stall_the_writers(tmp_path) -> None:
    """Only the store's own writers take SQLite's write lock up front: a script or a test
    that reads in a long transaction must not hold it while the app wants to write."""
    store = VoteStore(f"sqlite:///{tmp_path / 'votes.db'}", busy_timeout=2.0)
    with store.engine.connect() as reader:
        reader.execute(text("SELECT count(*) FROM votes")).scalar()  # transaction still open
        started = time.monotonic()
        cid = store.register_comparison("C1", ts(1), "U1", "a fox", POSITIONS)
        store.apply_reaction("Ev1", "C1", ts(1), "U2", "A", True, ts(2))
        assert time.monotonic() - started < 1.0
    assert store.vote_count(cid) == 1
    store.close()


# --- App Home: a person's default and last pictures ---------------------------------------


def test_a_persons_default_is_saved_replaced_and_forgotten(store: VoteStore) -> None:
    assert store.preference("U1") is None
    store.set_preference("U1", "imagen")
    store.set_preference("U1", "auto")
    store.set_preference("U2", "compare")
    assert (store.preference("U1"), store.preference("U2")) == ("auto", "compare")
    store.set_preference("U1", None)
    assert store.preference("U1") is None


def _picture(store: VoteStore, user: str, prompt: str, **fields) -> None:
    store.record_generation(
        **{
            "user_id": user,
            "channel_id": "C1",
            "prompt": prompt,
            "provider": "imagen",
            "model": "gemini-image",
            "options": {},
            "timings": {},
            "outcome": "ok",
            "image_urls": [],
            "request_id": f"r-{prompt}",
            **fields,
        }
    )


def test_recent_pictures_are_the_persons_last_ten_that_were_shown(store: VoteStore) -> None:
    for i in range(12):
        _picture(store, "U1", f"p{i}", image_urls=[f"https://storage.googleapis.com/b/o{i}.png"])
    _picture(store, "U1", "refused", outcome="content_policy")
    _picture(store, "U2", "someone else's")
    _picture(store, "U1", "uploaded", rated=True, upload_file_id="F123")
    _picture(store, "U1", "posted", message_ts="1700000000.000100")
    recent = store.recent_pictures("U1")
    assert [p.prompt for p in recent] == ["posted", "uploaded"] + [
        f"p{i}" for i in (11, 10, 9, 8, 7, 6, 5, 4)
    ]
    assert recent[0].message_ts == "1700000000.000100" and recent[0].file_id is None
    assert recent[1].file_id == "F123" and recent[1].message_ts is None
    assert recent[2].image_urls == ["https://storage.googleapis.com/b/o11.png"]
    assert recent[0].created_at.tzinfo is not None


def test_a_burst_of_history_is_written_in_a_few_transactions_and_flushed_at_once(tmp_path):
    """The history writer lets a burst's entries gather (`LINGER`), then writes them in one
    transaction; `flush()` writes what is queued without waiting for more."""
    transactions: list[int] = []

    class CountingStore(VoteStore):
        def write_history(self, entries, outcomes=(), usage=()):
            transactions.append(len(entries))
            super().write_history(entries, outcomes, usage)

    store = CountingStore(f"sqlite:///{tmp_path}/history.db")
    writer = HistoryWriter(store)
    fields = {"user_id": "U1", "channel_id": "C1", "prompt": "p", "provider": "imagen",
              "model": "gemini-image", "options": {}, "timings": {}, "outcome": "ok",
              "image_urls": [], "rated": True}  # fmt: skip

    def add(i: int) -> None:
        writer.add(history_entry(**fields, request_id=f"r{i}", message_ts=ts(i + 1)))

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(add, range(100)))
    started = time.monotonic()
    assert writer.flush(timeout=5.0)
    assert time.monotonic() - started < 1.0
    assert sum(transactions) == 100 and len(transactions) <= 3
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(GENERATIONS)).scalar() == 100
    store.close()


def test_a_burst_of_claims_is_won_once_per_job(store: VoteStore):
    """Many threads claim at once (the claims share transactions): each job is won by one
    claim, a job claimed twice in one batch included, and a later claim loses."""
    keys = [f"burst-{i % 25}" for i in range(100)]  # each job claimed four times
    won: list[str] = []
    lock = threading.Lock()

    def claim(key: str) -> None:
        if store.claim_delivery(key, "C1"):
            with lock:
                won.append(key)

    threads = [threading.Thread(target=claim, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(won) == sorted(set(keys))
    assert not store.claim_delivery("burst-0", "C1")
    assert store.delivery_state("burst-0") == "posting"
    # one shared transaction with the same job in it twice: the first claim wins
    together = [("twice", "C1", "posting"), ("twice", "C1", "posting"), ("burst-1", "C1", "told")]
    assert store._claim_together(together) == [True, False, False]
