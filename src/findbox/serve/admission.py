"""A global bound on the bytes of requests in flight, checked before a body is read.

Each request is capped (--max-body-bytes, --max-instances, pixels), but not their sum: many
concurrent large requests would each be admitted and together exhaust the machine. `InFlightBudget`
is that sum: a request reserves its declared Content-Length (a chunked one as it streams) times
`COST_PER_BODY_BYTE` before its body is read, and gives it back once its answer is sent. A request
that would take the total over the budget is answered 503 with Retry-After at once, its body
discarded as it arrives, never buffered or queued.
"""

from __future__ import annotations

import os
import threading

# Memory one body byte costs while its request is served: the buffered body, the JSON text's
# base64 strings and the validated request (each about the body's size), then the decoded image
# bytes (3/4 of it). Measured on the 30 MB flood (docs/OPERATIONS.md, "Bytes in flight").
COST_PER_BODY_BYTE = 4

# Seconds a refused client is asked to wait: about one large request's time on a CPU, so that a
# retry finds the budget freed by the requests answered meanwhile.
RETRY_AFTER_S = 2


def default_inflight_bytes() -> int:
    """A 32nd of the machine's physical memory (512 MiB on a 16 GiB machine).

    The server's RSS grows by about the budget under a flood of large bodies (ops_flood.json): at a
    16th, 64 clients of 30 MB images grew this 23 GiB machine's server by 1.4 GiB. A 32nd still admits
    about three 30 MB images at once, more than the one model worker serves at a time.
    """
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: a 16 GiB machine's share
        physical = 16 * 1024**3
    return physical // 32


class Reservation:
    """Bytes held against an `InFlightBudget`; `release()` gives them back (once, whatever the path)."""

    def __init__(self, budget: InFlightBudget, nbytes: int):
        self.budget = budget
        self.nbytes = nbytes

    def grow(self, nbytes: int) -> bool:
        """Reserve `nbytes` more (a streamed body's next chunk); False when over the budget."""
        if not self.budget._take(nbytes, held=self.nbytes):
            return False
        self.nbytes += nbytes
        return True

    def release(self) -> None:
        self.budget._give(self.nbytes)
        self.nbytes = 0


class InFlightBudget:
    """The bytes all admitted requests may hold together; thread-safe.

    A request larger than the whole budget is still admitted when it is alone (nothing else
    reserved), so that every request under the per-request caps can be served.
    """

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.reserved = 0
        self.refused = 0  # requests answered 503 for lack of budget, since start
        self._lock = threading.Lock()

    def reserve(self, nbytes: int) -> Reservation | None:
        """A reservation of `nbytes`, or None (counted in `refused`) when the budget has no room."""
        if not self._take(nbytes, held=0):
            return None
        return Reservation(self, nbytes)

    def _take(self, nbytes: int, held: int) -> bool:
        """Add `nbytes` for a requester already holding `held`; alone (all reserved is its own), always."""
        with self._lock:
            if self.reserved + nbytes > self.capacity and self.reserved != held:
                self.refused += 1
                return False
            self.reserved += nbytes
            return True

    def _give(self, nbytes: int) -> None:
        with self._lock:
            self.reserved -= nbytes
