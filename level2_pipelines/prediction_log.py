"""The prediction log: every answer the service gives, and the true species when it comes back.

A request only appends a row to a list in memory (microseconds); a background task writes the
rows to the database every `flush_every_s`, in one transaction, off the event loop, and the
service writes what is left when it shuts down. A write that fails keeps its rows for the next
flush; past `max_pending` rows the oldest are dropped and counted (`dropped`), so a database
that is gone for good cannot grow the service without bound. The service starts whether or not
the database answers (the tables are made by the first flush that reaches it); a row is
written at most once, even when a commit's answer was lost with the connection, and every
connection and statement gives up after `timeout_s`.

The database is any SQLAlchemy URL: a SQLite file in the state folder by default (in WAL mode,
so the monitor reads while the service writes), PostgreSQL for a team (LEVEL2_PREDICTION_LOG_URI).
The monitor reads it by time window; `POST /feedback` adds the species a biologist confirmed.
"""

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from shared.contract import CLASSES, NUMERIC_FEATURES, TARGET

log = logging.getLogger("uvicorn.error")

metadata = sa.MetaData()
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("prediction_id", sa.String(32), primary_key=True),
    sa.Column("served_at", sa.Float, nullable=False, index=True),  # seconds since the epoch, UTC
    sa.Column("model_version", sa.String(32), nullable=False),
    *(sa.Column(name, sa.Float, nullable=False) for name in NUMERIC_FEATURES),
    sa.Column("island", sa.String(32), nullable=False),
    sa.Column("sex", sa.String(16)),  # optional in a request
    sa.Column("predicted", sa.String(32), nullable=False),
    *(sa.Column(f"p_{species}", sa.Float, nullable=False) for species in CLASSES),
    sa.Column("latency_ms", sa.Float, nullable=False),  # in the service, request to answer
)
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("prediction_id", sa.String(32), primary_key=True),
    sa.Column("species", sa.String(32), nullable=False),
    sa.Column("received_at", sa.Float, nullable=False, index=True),
)
# The challenger's answers off the answer path (`rollout.py`): in shadow, to every request; in
# either mode, its failed attempts (no `predicted`, the `error`), the champion having answered.
# Keyed by the request's prediction_id, so the feedback on an answer judges both models.
shadow_answers = sa.Table(
    "shadow_answers",
    metadata,
    sa.Column("prediction_id", sa.String(32), primary_key=True),
    sa.Column("served_at", sa.Float, nullable=False, index=True),
    sa.Column("model_version", sa.String(32), nullable=False),  # the challenger's
    sa.Column("predicted", sa.String(32)),  # None: it failed (`error` says why)
    *(sa.Column(f"p_{species}", sa.Float) for species in CLASSES),
    sa.Column("latency_ms", sa.Float, nullable=False),  # its model's time on this request
    sa.Column("champion_latency_ms", sa.Float, nullable=False),  # the champion's, same request
    sa.Column("error", sa.String(200)),
)
FEATURE_COLUMNS = [*NUMERIC_FEATURES, "island", "sex"]
SHADOW = "_shadow"  # marks a buffered row of `shadow_answers`


def open_engine(url: str, timeout_s: int = 5) -> sa.Engine:
    """An engine on `url` with the tables created; SQLite in WAL mode with a patient lock."""
    engine = make_engine(url, timeout_s)
    metadata.create_all(engine)
    return engine


def make_engine(url: str, timeout_s: int = 5) -> sa.Engine:
    """An engine on `url` that has not connected yet. On PostgreSQL (psycopg or psycopg2)
    connecting and each statement give up after `timeout_s`, and a pooled connection a
    restarted server closed is noticed before use; SQLite waits 30 s for another writer."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _wal(connection, _record) -> None:
            # WAL: readers (the monitor, /feedback) never wait for the writer, nor it for them.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")

        return engine
    bounded = {}
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in (
        "psycopg",
        "psycopg2",
    ):
        bounded = {
            "connect_timeout": timeout_s,
            "options": f"-c statement_timeout={timeout_s * 1000}",
        }
    # pool_timeout: a thread waiting for a pooled connection gives up too.
    return sa.create_engine(url, connect_args=bounded, pool_pre_ping=True, pool_timeout=timeout_s)


def _insert_once(engine: sa.Engine, table: sa.Table = predictions):
    """INSERT that skips a row already there: a commit whose answer was lost (the server went
    away just then) is retried with rows it may already hold."""
    dialect = {"postgresql": postgresql, "sqlite": sqlite}.get(engine.dialect.name)
    if dialect is None:
        return table.insert()
    return dialect.insert(table).on_conflict_do_nothing(index_elements=["prediction_id"])


class PredictionLog:
    """Rows recorded on the request path, written to the database in the background."""

    def __init__(self, engine: sa.Engine, *, max_pending: int = 200_000) -> None:
        self.engine, self.max_pending = engine, max_pending
        self.dropped = 0  # rows given up because the database could not take them in time
        self._pending: deque[dict] = deque()
        self._write = threading.Lock()  # one flush at a time: the background task, or close
        # Held only to swap or change the buffer: a request appending on the event loop and a
        # flush taking the buffer in a thread never meet halfway (no row lost, none twice).
        self._buffer = threading.Lock()
        self._failing: str | None = None
        self._dropping = False  # said once per outage
        self._tables_made = False

    def record(
        self,
        prediction_id: str,
        model_version: str,
        features: dict,
        predicted: str,
        probabilities: dict[str, float],
        latency_ms: float,
    ) -> None:
        """Keep one answer; called on the event loop, so it only appends (and, full, drops the
        oldest: a flush stuck on a database that does not answer must not grow it either)."""
        row = {
            "prediction_id": prediction_id,
            "served_at": time.time(),
            "model_version": model_version,
            **features,
            "predicted": predicted,
            **{f"p_{species}": p for species, p in probabilities.items()},
            "latency_ms": latency_ms,
        }
        self._keep(row)

    def _keep(self, row: dict) -> None:
        with self._buffer:
            if len(self._pending) >= self.max_pending:
                self._pending.popleft()
                self._drop(1)
            self._pending.append(row)

    def record_shadow(
        self,
        prediction_id: str,
        model_version: str,
        predicted: str | None,
        probabilities: dict[str, float] | None,
        latency_ms: float,
        champion_latency_ms: float,
        error: str | None = None,
    ) -> None:
        """Keep the challenger's answer to a request the champion answered (or its failure)."""
        row = {
            SHADOW: True,
            "prediction_id": prediction_id,
            "served_at": time.time(),
            "model_version": model_version,
            "predicted": predicted,
            **{f"p_{c}": (probabilities or {}).get(c) for c in CLASSES},
            "latency_ms": latency_ms,
            "champion_latency_ms": champion_latency_ms,
            "error": error[:200] if error else None,
        }
        self._keep(row)

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def problem(self) -> str | None:
        """Why recorded answers are waiting in memory, while they are."""
        if self._failing is None:
            return None
        return f"prediction log: cannot write ({self._failing}); keeping answers to retry"

    def flush(self) -> int:
        """Write every pending row in one transaction; return how many were written."""
        with self._write:
            with self._buffer:  # requests append to the new one
                taken, self._pending = self._pending, deque()
            rows = list(taken)
            if not rows:
                return 0
            try:
                self.make_tables()
                answers = [row for row in rows if SHADOW not in row]
                # Copies without the mark: a failed write keeps the rows as they were.
                shadows = [{k: v for k, v in r.items() if k != SHADOW} for r in rows if SHADOW in r]
                with self.engine.begin() as connection:
                    if answers:
                        connection.execute(_insert_once(self.engine), answers)
                    if shadows:
                        connection.execute(_insert_once(self.engine, shadow_answers), shadows)
            except sa.exc.SQLAlchemyError as error:
                self._keep_for_later(rows, error)
                return 0
            if self._failing is not None:
                log.info("prediction log: writing again (%d rows)", len(rows))
                self._failing = None
            self._dropping = False
            return len(rows)

    def make_tables(self) -> None:
        if not self._tables_made:
            # Services starting together race to make them: the loser finds them on its next
            # flush (its rows wait until then).
            metadata.create_all(self.engine)
            self._tables_made = True

    def _keep_for_later(self, rows: list[dict], error: Exception) -> None:
        with self._buffer:
            self._pending.extendleft(reversed(rows))  # oldest first, before newer ones
            excess = max(len(self._pending) - self.max_pending, 0)
            for _ in range(excess):
                self._pending.popleft()
            self._drop(excess)
        problem = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"
        if problem != self._failing:  # once per kind of failure, not once per flush
            log.error("prediction log: cannot write (%s); keeping rows to retry", problem)
            self._failing = problem

    def _drop(self, rows: int) -> None:
        """The policy when the buffer is full: the oldest answers go, counted, and said once
        per outage (`dropped` is on /metrics)."""
        if rows <= 0:
            return
        if not self._dropping:
            self._dropping = True
            log.error(
                "prediction log: %d answers kept in memory (the most it keeps): dropping the "
                "oldest until the database takes them",
                self.max_pending,
            )
        self.dropped += rows

    def knows(self, prediction_id: str) -> bool:
        """Whether this service gave that answer (written, or still pending)."""
        with self._write:  # not while a flush has rows in hand, in neither place yet
            return self._knows(prediction_id)

    def _knows(self, prediction_id: str) -> bool:
        with self._buffer:
            pending = list(self._pending)
        if any(
            row["prediction_id"] == prediction_id and SHADOW not in row for row in reversed(pending)
        ):
            return True
        self.make_tables()
        query = sa.select(predictions.c.prediction_id).where(
            predictions.c.prediction_id == prediction_id
        )
        with self.engine.connect() as connection:
            return connection.execute(query).first() is not None


@dataclass(frozen=True)
class Feedback:
    prediction_id: str
    species: str
    previous: str | None  # the species confirmed before for this prediction, if any


def add_feedback(engine: sa.Engine, prediction_id: str, species: str) -> Feedback:
    """Record the true species of a prediction; a later confirmation replaces an earlier one
    (one label per prediction), and says which it replaced."""
    with engine.begin() as connection:
        previous = connection.execute(
            sa.select(feedback.c.species).where(feedback.c.prediction_id == prediction_id)
        ).scalar()
        row = {"species": species, "received_at": time.time()}
        if previous is None:
            connection.execute(feedback.insert(), {"prediction_id": prediction_id, **row})
        else:
            connection.execute(
                feedback.update().where(feedback.c.prediction_id == prediction_id), row
            )
    return Feedback(prediction_id, species, previous)


def served_window(engine: sa.Engine, *, last: int, since: float | None = None) -> pd.DataFrame:
    """The most recent `last` answers (served after `since`, if given), oldest first: the
    features as served, the predicted species and the model version."""
    query = sa.select(predictions).order_by(predictions.c.served_at.desc()).limit(last)
    if since is not None:
        query = query.where(predictions.c.served_at > since)
    with engine.connect() as connection:
        frame = pd.read_sql(query, connection)
    return frame.iloc[::-1].reset_index(drop=True)


def labelled_rows(engine: sa.Engine, *, since: float | None = None) -> pd.DataFrame:
    """Served inputs whose true species came back (served after `since`), in the columns of a
    training batch: the features, `species` (the confirmed one) and `year` (when served)."""
    query = sa.select(
        *(predictions.c[name] for name in FEATURE_COLUMNS),
        predictions.c.served_at,
        feedback.c.species.label(TARGET),
    ).join(feedback, feedback.c.prediction_id == predictions.c.prediction_id)
    if since is not None:
        query = query.where(predictions.c.served_at > since)
    with engine.connect() as connection:
        frame = pd.read_sql(query.order_by(predictions.c.served_at), connection)
    years = pd.to_datetime(frame.pop("served_at"), unit="s", utc=True).dt.year
    frame["year"] = years.astype("int64")
    return frame


@dataclass(frozen=True)
class LiveAccuracy:
    model_version: str
    labelled: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.labelled if self.labelled else math.nan


def live_accuracy(
    engine: sa.Engine, *, since: float | None = None, table: sa.Table = predictions
) -> list[LiveAccuracy]:
    """Per model version, over answers served after `since`: how many got their true species
    back, and how many of those the model had right. `table`: the answers given, or a
    challenger's unseen answers in shadow (`shadow_answers`), which the feedback on the answer
    given to the same request judges."""
    right = sa.case((table.c.predicted == feedback.c.species, 1), else_=0)
    query = (
        sa.select(table.c.model_version, sa.func.count(), sa.func.sum(right))
        .join(feedback, feedback.c.prediction_id == table.c.prediction_id)
        .where(table.c.predicted.is_not(None))  # a challenger's failed attempt judges nothing
        .group_by(table.c.model_version)
    )
    if since is not None:
        query = query.where(table.c.served_at > since)
    with engine.connect() as connection:
        rows: Sequence = connection.execute(query).all()
    return [LiveAccuracy(str(v), int(n), int(ok or 0)) for v, n, ok in sorted(rows)]
