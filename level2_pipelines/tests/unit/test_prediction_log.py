"""The prediction log keeps what it cannot write yet, and bounds what it keeps."""

import time

import sqlalchemy as sa

from level2_pipelines import prediction_log
from shared.contract import EXAMPLE_PAYLOAD

PROBABILITIES = {"Adelie": 0.9, "Chinstrap": 0.05, "Gentoo": 0.05}


def record(log: prediction_log.PredictionLog, n: int, start: int = 0) -> list[str]:
    ids = [f"{i:032x}" for i in range(start, start + n)]
    for i in ids:
        log.record(i, "1", EXAMPLE_PAYLOAD, "Adelie", PROBABILITIES, 1.0)
    return ids


def test_rows_a_failing_database_refuses_are_written_once_it_is_back(tmp_path):
    """A flush that fails keeps its rows, oldest first; the next good flush writes them all."""
    good = prediction_log.open_engine(f"sqlite:///{tmp_path / 'log.db'}")
    log = prediction_log.PredictionLog(sa.create_engine(f"sqlite:///{tmp_path}/gone/log.db"))
    first = record(log, 3)

    assert log.flush() == 0 and log.pending == 3
    later = record(log, 2, start=3)
    log.engine = good

    assert log.flush() == 5
    frame = prediction_log.served_window(good, last=10)
    assert list(frame["prediction_id"]) == first + later
    assert log.knows(first[0]) and not log.knows("f" * 32)


def test_past_max_pending_the_oldest_rows_are_dropped_and_counted(tmp_path):
    log = prediction_log.PredictionLog(
        sa.create_engine(f"sqlite:///{tmp_path}/gone/log.db"), max_pending=4
    )
    ids = record(log, 6)

    log.flush()

    assert log.pending == 4 and log.dropped == 2
    assert [row["prediction_id"] for row in log._pending] == ids[2:]


def test_rows_a_lost_commit_answer_already_wrote_are_written_once_on_retry(tmp_path):
    """A commit whose answer was lost (the server went away just then) is retried with rows
    the database already holds: the others are written, none twice, none kept for ever."""
    engine = prediction_log.open_engine(f"sqlite:///{tmp_path / 'log.db'}")
    log = prediction_log.PredictionLog(engine)
    ids = record(log, 4)
    with engine.begin() as connection:  # the first two made it before the answer was lost
        connection.execute(prediction_log.predictions.insert(), list(log._pending)[:2])

    written = log.flush()

    assert (written, log.pending, log.problem) == (4, 0, None)
    assert list(prediction_log.served_window(engine, last=10)["prediction_id"]) == ids


def test_a_full_buffer_drops_the_oldest_even_before_any_flush(tmp_path):
    """The bound holds while a flush is stuck on a database that does not answer: recording
    past it drops the oldest answers and counts them."""
    log = prediction_log.PredictionLog(
        sa.create_engine(f"sqlite:///{tmp_path}/gone/log.db"), max_pending=3
    )

    ids = record(log, 5)

    assert (log.pending, log.dropped) == (3, 2)
    assert [row["prediction_id"] for row in log._pending] == ids[2:]


def test_a_log_on_a_database_that_is_down_is_made_without_reaching_it(tmp_path):
    """Making the log's engine does not connect; its first flush fails within the timeout
    and keeps the rows."""
    engine = prediction_log.make_engine(
        "postgresql+psycopg://postgres@127.0.0.1:9/nowhere", timeout_s=2
    )
    log = prediction_log.PredictionLog(engine)
    record(log, 2)

    started = time.monotonic()
    written = log.flush()

    assert (written, log.pending) == (0, 2)
    assert time.monotonic() - started < 30
    assert log.problem.startswith("prediction log: cannot write (OperationalError")
