"""The loopback load generator: it reads keep-alive answers whole, times each one, refuses
non-loopback hosts, and measures a target only at the concurrencies asked for."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.loadgen import LoadResult, round_robin, run_load


class Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"species": "Adelie"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_) -> None:
        pass


@pytest.fixture
def port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_run_load_counts_and_times_every_answer(port):
    """Bounded by count: each answer is read whole (the next one parses), timed and stamped."""
    result = run_load(port, "/predict", b"{}", concurrency=2, seconds=30, max_requests=40)

    assert dict(result.statuses) == {200: 40}
    assert not result.failures
    assert len(result.latencies_s) == len(result.answered_at) == 40
    assert all(latency > 0 for latency in result.latencies_s)


def test_run_load_refuses_a_host_off_the_machine():
    """Load goes to loopback addresses only."""
    with pytest.raises(ValueError, match="loopback"):
        run_load(1, "/", b"", concurrency=1, seconds=1, host="192.0.2.1")


def test_round_robin_loads_a_target_only_at_the_concurrencies_given():
    """`only` keeps a target to some concurrencies; the others are loaded at all of them."""
    calls = []

    def load(name: str):
        def run(concurrency: int) -> LoadResult:
            calls.append((name, concurrency))
            return LoadResult(concurrency, 1.0, [0.001, 0.002], {200: 2})

        return run

    rows, _ = round_robin(
        {"a": load("a"), "b": load("b")}, (1, 8), rounds=2, say=lambda _: None, only={"b": [8]}
    )

    assert calls == [("a", 1), ("a", 8), ("b", 8)] * 2
    assert {(r["target"], r["concurrency"]) for r in rows} == {("a", 1), ("a", 8), ("b", 8)}
