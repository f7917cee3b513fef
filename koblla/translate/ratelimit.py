"""Flow control for the openai backend: RPM/TPM token buckets and a prioritised concurrency limit.

A bucket holds up to `per_minute` units and refills at per_minute/60 units per second; `acquire(n)` waits until n
units are there. A cost above the capacity is clamped to it (one huge request still goes, alone).
"""
from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time


class TokenBucket:
    def __init__(self, per_minute: int):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # units per second
        self.level = self.capacity
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    async def acquire(self, units: float = 1.0) -> None:
        units = min(float(units), self.capacity)
        async with self._lock:  # FIFO: waiters are served in arrival order
            while True:
                self._refill()
                if self.level >= units:
                    self.level -= units
                    return
                await asyncio.sleep((units - self.level) / self.rate)


class RateLimiter:
    """Both quotas at once; 0 disables one."""

    def __init__(self, rpm: int = 0, tpm: int = 0):
        self.requests = TokenBucket(rpm) if rpm else None
        self.tokens = TokenBucket(tpm) if tpm else None

    async def acquire(self, tokens: int) -> None:
        if self.requests:
            await self.requests.acquire(1)
        if self.tokens:
            await self.tokens.acquire(tokens)


class PrioritySlots:
    """A concurrency limit whose waiters are served lowest priority number first, then in arrival order.

    The backend gives retries priority 0 and first tries 1: with thousands of queued first tries, a FIFO limit
    would push every retry to the end of the run, where they trickle out with free slots idle (a long tail).
    """

    def __init__(self, slots: int):
        self.free = slots
        self._waiters: list[tuple[int, int, asyncio.Future]] = []
        self._seq = itertools.count()

    async def acquire(self, priority: int = 1) -> None:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # granted, then cancelled before running: hand it on
                self.release()
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1

    @contextlib.asynccontextmanager
    async def slot(self, priority: int = 1):
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()
