"""Timing checks shared by the endpoint-profile tests (test_endpoints, test_cluster_endpoints).

keygate arms a request's deadline when it reads the request, after our send: a reply at the
deadline never comes before `budget` measured from our send. EPS only absorbs clock reading
granularity; MARGIN is how late a reply at the deadline may come (deadline timer resolution,
event-loop turns, ASan, a loaded 2-CPU machine, the test's own reading); IMMEDIATE ("at once",
"normal speed") is far below every budget those tests check against (the smallest is 300 ms).
"""

import time
from typing import Tuple

import keygate_harness as h

EPS = 0.002
MARGIN = h.scaled(0.25)
IMMEDIATE = h.scaled(0.1)


class DeadlineAssertions:
    """Mixed into a unittest.TestCase."""

    def timed_call(self, conn: h.RespConnection, *args) -> Tuple[bytes, float]:
        t0 = time.monotonic()
        raw = conn.call_raw(*args)
        return raw, time.monotonic() - t0

    def assert_at_deadline(self, elapsed: float, budget_ms: int, what: str) -> None:
        budget = budget_ms / 1000.0
        self.assertGreaterEqual(elapsed, budget - EPS,
                                f"{what}: answered after {elapsed * 1000:.1f} ms, before the "
                                f"{budget_ms} ms budget ran out")
        self.assertLessEqual(elapsed, budget + MARGIN,
                             f"{what}: answered after {elapsed * 1000:.1f} ms, later than the "
                             f"{budget_ms} ms budget + {MARGIN * 1000:.0f} ms")

    def assert_immediate(self, elapsed: float, what: str, limit: float = IMMEDIATE) -> None:
        self.assertLess(elapsed, limit, f"{what}: answered after {elapsed * 1000:.1f} ms, not at "
                                        f"once (limit {limit * 1000:.0f} ms)")
