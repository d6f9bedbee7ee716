"""FTP control connections (RFC 959): client command lines and server reply codes.

A segment may hold several lines; each engine hands the session the commands and the
reply codes it found in one segment (the tshark engine from Wireshark's FTP dissector,
the fast engine from these functions), and the session pairs them."""

from __future__ import annotations

PORTS = frozenset({21})
MAX_LINES = 32  # lines looked at in one segment: a data-stuffed control channel stays cheap


def _lines(data: bytes) -> list[bytes]:
    return data.replace(b"\r\n", b"\n").split(b"\n")[:MAX_LINES]


def commands(data: bytes) -> list[tuple[str, str]]:
    """(COMMAND, argument) of each command line: a command is 3-4 letters (RFC 959), told
    apart from stray data by that shape."""
    out = []
    for line in _lines(data):
        verb, _, arg = line.strip().partition(b" ")
        if 3 <= len(verb) <= 4 and verb.isalpha() and verb.isascii():
            out.append((verb.decode().upper(), arg.strip().decode("utf-8", "backslashreplace")))
    return out


def replies(data: bytes) -> list[tuple[int, str]]:
    """(code, text) of each reply line that starts with a three-digit code (the first and
    the last line of a multi-line reply both do; lines between do not)."""
    out = []
    for line in _lines(data):
        code = line[:3]
        if len(code) == 3 and code.isdigit() and code.isascii() and line[3:4] in (b" ", b"-", b""):
            out.append((int(code), line[4:].strip().decode("utf-8", "backslashreplace")))
    return out
