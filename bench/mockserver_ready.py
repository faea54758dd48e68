"""How long `foxmock.testing.MockServer` takes to be ready in-process; prints one JSON object.

Ready = ``MockServer(...)`` constructed (scenarios loaded) and ``start()`` returned (listening on
its background thread). The first run pays for imports and one-time caches and is reported on
its own ("cold"); the median is over the ``--runs`` after it. Each server is stopped before the
next one starts, and every one is checked with a real request.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request

t_import = time.perf_counter()
from foxmock.testing import MockServer  # noqa: E402

IMPORT_S = time.perf_counter() - t_import


def once(scenarios: list[str]) -> float:
    t0 = time.perf_counter()
    server = MockServer(scenarios)
    server.start()
    ready = time.perf_counter() - t0
    try:
        with urllib.request.urlopen(f"{server.url}/healthz", timeout=5) as response:
            assert response.status == 200
    finally:
        server.stop()
    return ready


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--scenarios", action="append", default=[], help="default: bundled")
    args = parser.parse_args()
    cold = once(args.scenarios)
    warm = [once(args.scenarios) for _ in range(args.runs)]
    print(
        json.dumps(
            {
                "import_ms": IMPORT_S * 1000,
                "cold_ms": cold * 1000,
                "median_ms": statistics.median(warm) * 1000,
                "min_ms": min(warm) * 1000,
                "max_ms": max(warm) * 1000,
                "runs": len(warm),
            }
        )
    )


if __name__ == "__main__":
    main()
