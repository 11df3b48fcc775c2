"""A small HTTP/1.1 load generator for loopback benchmarks: N keep-alive connections, each
sending the same request as fast as answers come back, for a bounded time and count.

It speaks just enough HTTP for JSON services (Content-Length bodies), so that the client costs
far less CPU than the server it measures; httpx would need most of a core at these rates.
Only loopback addresses are accepted: this tool never sends traffic off the machine.

    python -m shared.loadgen --port 8002 [--concurrency 32] [--seconds 5] [--rounds 3]

sends the contract's example payload to a running service's /predict and prints the medians.
"""

import argparse
import asyncio
import ipaddress
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from shared.contract import EXAMPLE_PAYLOAD

REQUEST_TIMEOUT_S = 10.0


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)  # connection errors, timeouts
    # When each answer arrived (time.perf_counter), in the order latencies_s holds them.
    answered_at: list[float] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.latencies_s)

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        if len(self.latencies_s) < 2:
            return float("nan")
        cuts = statistics.quantiles(self.latencies_s, n=1000, method="inclusive")
        return 1000 * cuts[min(len(cuts) - 1, round(q * 1000) - 1)]


def median_row(name: str, concurrency: int, runs: list[LoadResult]) -> dict:
    """One table row: the medians of `runs` of one target at one concurrency, and all errors."""
    return {
        "target": name,
        "concurrency": concurrency,
        "requests_per_s": statistics.median(r.throughput for r in runs),
        "p50_ms": statistics.median(r.percentile_ms(0.50) for r in runs),
        "p99_ms": statistics.median(r.percentile_ms(0.99) for r in runs),
        "errors": sum(r.requests - r.ok + sum(r.failures.values()) for r in runs),
    }


def round_robin(
    targets: dict[str, Callable[[int], LoadResult]],
    concurrencies: Iterable[int],
    rounds: int,
    say: Callable[[str], None] = print,
    only: dict[str, Iterable[int]] | None = None,
) -> tuple[list[dict], dict[tuple[str, int], list[LoadResult]]]:
    """Load each target at each concurrency in turn, `rounds` times over, so that a noisy
    moment on a shared machine hurts them alike: (median rows, every run by target and
    concurrency). `only`: targets loaded at just these of the concurrencies."""
    runs: dict[tuple[str, int], list[LoadResult]] = {}
    only = {name: set(levels) for name, levels in (only or {}).items()}
    for round_number in range(1, rounds + 1):
        for concurrency in concurrencies:
            for name, load in targets.items():
                if concurrency not in only.get(name, {concurrency}):
                    continue
                say(f"bench: round {round_number}/{rounds}, c={concurrency}, {name}")
                runs.setdefault((name, concurrency), []).append(load(concurrency))
    return [median_row(name, c, results) for (name, c), results in runs.items()], runs


def _check_loopback(host: str) -> None:
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"load is only sent to loopback addresses, not {host!r}")


def build_request(host: str, port: int, method: str, path: str, body: bytes = b"") -> bytes:
    headers = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: keep-alive",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; return its status and whether the server keeps the connection."""
    # The head in one read, not one per line: the client's CPU is the server's, on 2 cores.
    status_line, *headers = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
    status = int(status_line.split()[1])
    length, keep_alive = 0, True
    for line in headers:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value == b"close":
            keep_alive = False
    await reader.readexactly(length)
    return status, keep_alive


async def _connection(
    host: str, port: int, request: bytes, deadline: float, budget: list[int], result: LoadResult
) -> None:
    writer = None
    try:
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            start = time.perf_counter()
            writer.write(request)
            async with asyncio.timeout(REQUEST_TIMEOUT_S):  # no task per request, as wait_for
                status, keep_alive = await _read_response(reader)
            answered = time.perf_counter()
            result.latencies_s.append(answered - start)
            result.answered_at.append(answered)
            result.statuses[status] += 1
            if not keep_alive:
                writer.close()
                writer = None
    except (
        OSError,
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
        TimeoutError,
        ValueError,
        IndexError,
    ) as error:
        result.failures[type(error).__name__] += 1
    finally:
        if writer is not None:
            writer.close()


async def _run(
    host: str, port: int, request: bytes, concurrency: int, seconds: float, max_requests: int
) -> LoadResult:
    result = LoadResult(concurrency=concurrency, seconds=seconds)
    budget = [max_requests]  # shared by all connections: the run is bounded in count too
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(
        *(_connection(host, port, request, deadline, budget, result) for _ in range(concurrency))
    )
    result.seconds = time.perf_counter() - start
    return result


def run_load(
    port: int,
    path: str,
    body: bytes,
    *,
    concurrency: int,
    seconds: float,
    host: str = "127.0.0.1",
    method: str = "POST",
    max_requests: int = 1_000_000,
) -> LoadResult:
    """Send `body` to `path` over `concurrency` connections for `seconds` (bounded)."""
    _check_loopback(host)
    request = build_request(host, port, method, path, body)
    return asyncio.run(_run(host, port, request, concurrency, seconds, max_requests))


def main() -> None:
    parser = argparse.ArgumentParser(description="Load a running service's /predict on loopback.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/predict")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    body = json.dumps(EXAMPLE_PAYLOAD).encode()
    runs = [
        run_load(args.port, args.path, body, concurrency=args.concurrency, seconds=args.seconds)
        for _ in range(args.rounds)
    ]
    row = median_row(f"127.0.0.1:{args.port}{args.path}", args.concurrency, runs)
    print(
        f"{row['target']} c={args.concurrency}, median of {args.rounds} x "
        f"{args.seconds:g} s: {row['requests_per_s']:,.0f} requests/s, "
        f"p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, errors {row['errors']}"
    )


if __name__ == "__main__":
    main()
