"""The prediction log keeps what it cannot write yet, and bounds what it keeps."""

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
