"""Senders: one thread a channel drains that channel's deliveries from the outbox, at most
`rate_per_minute` (a token bucket with `burst`), retrying with exponential backoff and
jitter. A channel that is down pauses only its own thread (until its next retry), so the
other channels, and detection (which only writes alerts to the store), never wait for it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable

from soc_core.notify.channels import Channel, DeliveryError
from soc_core.notify.outbox import Claim, Outbox

__all__ = ["Backoff", "Dispatcher", "TokenBucket"]

log = logging.getLogger("govsoc.notify")


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, float(burst), clock
        self.tokens, self.at = float(burst), clock()

    def _fill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def wait_time(self) -> float:
        """Seconds until a token is there (0 when one is)."""
        self._fill()
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> bool:
        self._fill()
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Backoff:
    """Delay before attempt n+1 after n failures: base * 2^(n-1), capped, ±20 % jitter (so
    senders of many machines do not retry in step); a receiver's Retry-After is a floor."""

    def __init__(self, base: float = 2.0, cap: float = 300.0) -> None:
        self.base, self.cap = base, cap

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        d = min(self.cap, self.base * 2 ** max(0, failures - 1))
        d *= random.uniform(0.8, 1.2)
        return max(d, min(retry_after or 0.0, self.cap))


class Dispatcher:
    def __init__(self, outbox: Outbox, channels: Iterable[Channel], *,
                 backoff: Backoff | None = None, poll: float = 1.0, lease_s: float = 120.0
                 ) -> None:
        self.outbox, self.channels = outbox, list(channels)
        self.backoff = backoff or Backoff()
        self.poll, self.lease_s = poll, lease_s
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # failures in a row per channel: the pause grows with the outage, not per message,
        # so a channel that is down is probed ever more rarely whatever the queue holds
        self._streak: dict[str, int] = {}

    def start(self) -> Dispatcher:
        for ch in self.channels:
            t = threading.Thread(target=self._run, args=(ch,), name=f"notify-{ch.name}",
                                 daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def close(self, timeout: float = 15.0) -> None:
        """Stop after the request in flight (if any) is recorded: a clean stop never
        leaves a delivery to be sent twice."""
        self.stop.set()
        self.outbox.kick.set()
        for t in self._threads:
            t.join(timeout)

    def _run(self, ch: Channel) -> None:
        bucket = TokenBucket(ch.rate_per_minute / 60.0, ch.burst)
        while not self.stop.is_set():
            try:
                wait, paused = self.step(ch, bucket)
            except Exception as exc:  # the outbox itself failed (disk): retry, never die
                log.error("notify %s: outbox error: %s", ch.name, type(exc).__name__)
                wait, paused = self.poll * 5, True
            if wait <= 0:
                continue
            if paused:  # after a failure new messages do not wake it: only the time does
                self.stop.wait(wait)
            else:
                self.outbox.kick.clear()
                self.outbox.kick.wait(wait)

    def step(self, ch: Channel, bucket: TokenBucket) -> tuple[float, bool]:
        """Send at most one delivery of `ch`; returns how long to wait before the next, and
        whether the channel is paused (rate limit or backoff) rather than idle."""
        wait = bucket.wait_time()
        if wait > 0:
            return min(wait, self.poll * 5), True
        claim = self.outbox.claim(ch.name, self.lease_s)
        if claim is None:
            due = self.outbox.next_due_ms(ch.name)
            if due is None:
                return self.poll, False
            return min(self.poll, max(0.0, due / 1000 - time.time())), False
        bucket.take()
        delay = self.deliver(ch, claim)
        return delay, delay > 0

    def deliver(self, ch: Channel, claim: Claim) -> float:
        try:
            ch.send(claim.message)
        except DeliveryError as exc:
            return self._failed(ch, claim, str(exc), exc.retry, exc.retry_after)
        except Exception as exc:  # a channel bug: retried like an outage, named by type
            return self._failed(ch, claim, f"{type(exc).__name__}", True, None)
        self.outbox.sent(claim)
        self._streak[ch.name] = 0
        return 0.0

    def _failed(self, ch: Channel, claim: Claim, error: str, retry: bool,
                retry_after: float | None) -> float:
        error = ch.scrub(error)
        failures = claim.attempts + 1
        streak = self._streak[ch.name] = self._streak.get(ch.name, 0) + 1
        if not retry or failures >= ch.max_attempts:
            self.outbox.failed(claim, error)
            log.warning("notify %s: message %s given up after %d attempt(s): %s",
                        ch.name, claim.message.id, failures, error)
            return 0.0
        delay = self.backoff.delay(max(failures, streak), retry_after)
        self.outbox.retry(claim, error, int((time.time() + delay) * 1000))
        log.info("notify %s: attempt %d failed (%s); next in %.1f s", ch.name, failures,
                 error, delay)
        # the channel pauses until then: a receiver that is down is not sent the rest of
        # the queue meanwhile
        return delay
