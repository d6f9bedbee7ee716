"""Deterministic byte mutations for the fuzz smoke run (no atheris needed): bit flips,
interesting values, cuts, repeats, inserts and splices of the seeds, the way a mutating
fuzzer starts. The same inputs every run, so a failure reproduces."""

from __future__ import annotations

import random
from collections.abc import Iterator

_INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff",
                b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\x0a", b"{{", b"(", b"\\", b"'",
                b'"', b"\xc3", b"\xed\xa0\x80", b"%", b"*", b"1e400", b"-1"]


def mutations(seeds: list[bytes], count: int, seed: int = 13) -> Iterator[bytes]:
    rng = random.Random(seed)
    pool = [s for s in seeds if s] or [b"\x00"]
    for _ in range(count):
        data = bytearray(rng.choice(pool))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(7)
            at = rng.randrange(len(data) + 1)
            if op == 0 and data:  # flip a bit
                i = rng.randrange(len(data))
                data[i] ^= 1 << rng.randrange(8)
            elif op == 1:  # an interesting value over the bytes there
                v = rng.choice(_INTERESTING)
                data[at:at + len(v)] = v
            elif op == 2:  # cut
                data = data[:at]
            elif op == 3 and data:  # repeat a slice
                j = rng.randrange(len(data))
                data[at:at] = data[min(j, at):max(j, at)][:4096] * rng.randint(2, 8)
            elif op == 4:  # random bytes in
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
            elif op == 5:  # splice with another seed
                other = rng.choice(pool)
                data = data[:at] + other[rng.randrange(len(other) + 1):]
            elif op == 6 and data:  # delete a run
                del data[at:at + rng.randint(1, 64)]
        yield bytes(data)
