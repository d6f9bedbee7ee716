"""SSH identification strings (RFC 4253 section 4.2): "SSH-2.0-OpenSSH_9.2p1 ..."."""

from __future__ import annotations


def banner(data: bytes) -> str | None:
    if not data.startswith(b"SSH-"):
        return None
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    return line[:255].decode("ascii", "backslashreplace")
