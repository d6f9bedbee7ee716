"""Two network namespaces joined by a veth pair, made for one live-capture test or
benchmark and removed afterwards: live capture is never exercised on the host's own
interfaces. Needs root."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def veth_pair(prefix: str, addresses: tuple[str, str] | None = None
              ) -> Iterator[tuple[str, str, str, str]]:
    """Yield (namespace A, namespace B, A's end, B's end), both ends and loopback up, each end
    with its /24 address from `addresses` if given; names unique to this call."""
    tag = uuid.uuid4().hex[:8]
    ns_a, ns_b, va, vb = f"{prefix}a{tag}", f"{prefix}b{tag}", f"gva{tag}", f"gvb{tag}"
    made = []
    try:
        for ns in (ns_a, ns_b):
            _ip("netns", "add", ns)
            made.append(ns)
        _ip("link", "add", va, "type", "veth", "peer", "name", vb)
        _ip("link", "set", va, "netns", ns_a)
        _ip("link", "set", vb, "netns", ns_b)
        for i, (ns, dev) in enumerate(((ns_a, va), (ns_b, vb))):
            if addresses:
                _ip("-n", ns, "addr", "add", f"{addresses[i]}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield ns_a, ns_b, va, vb
    finally:  # deleting a namespace deletes the veth end inside it
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
