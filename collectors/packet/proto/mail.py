"""Mail logins in clear: SMTP AUTH (RFC 4954), POP3 USER/PASS, APOP and AUTH (RFC 1939,
5034), IMAP LOGIN and AUTHENTICATE (RFC 9051). Each engine turns one segment into
requests (tag, VERB, user) and replies (tag, status) the same way; the session pairs them
(Session.mail). Passwords are never taken out of a line."""

from __future__ import annotations

PORTS = {25: "smtp", 587: "smtp", 110: "pop3", 143: "imap"}
MAX_LINES = 32
# the verbs that start a login, per protocol (USER only names the account)
LOGIN_VERBS = {"smtp": frozenset({"AUTH"}), "pop3": frozenset({"USER", "PASS", "APOP", "AUTH"}),
               "imap": frozenset({"LOGIN", "AUTHENTICATE"})}


def _lines(data: bytes) -> list[bytes]:
    return data.replace(b"\r\n", b"\n").split(b"\n")[:MAX_LINES]


def unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def requests(proto: str, data: bytes) -> list[tuple[str | None, str, str | None]]:
    """(tag, VERB, account) of each login line a client sent; other lines are skipped."""
    out = []
    verbs = LOGIN_VERBS[proto]
    for line in _lines(data):
        words = line.strip().decode("utf-8", "backslashreplace").split(" ")
        tag = None
        if proto == "imap":
            if len(words) < 2:
                continue
            tag, words = words[0], words[1:]
        verb = words[0].upper()
        if verb not in verbs:
            continue
        user = None
        if verb in ("USER", "APOP", "LOGIN") and len(words) > 1:
            user = unquote(words[1])
        out.append((tag, verb, user))
    return out


def replies(proto: str, data: bytes) -> list[tuple[str | None, str]]:
    """(tag, status) of the reply lines a server sent: SMTP's three-digit code (first coded
    line of the segment, as for FTP), POP3's +OK/-ERR, IMAP's tagged OK/NO/BAD."""
    out: list[tuple[str | None, str]] = []
    for line in _lines(data):
        if proto == "smtp":
            code = line[:3]
            if len(code) == 3 and code.isdigit() and code.isascii() and \
                    line[3:4] in (b" ", b"-", b""):
                return [(None, code.decode())]
        elif proto == "pop3":
            if line.startswith((b"+OK", b"-ERR")):
                out.append((None, "+OK" if line.startswith(b"+OK") else "-ERR"))
        else:
            words = line.split(b" ", 2)
            if len(words) >= 2 and words[0] not in (b"*", b"+") and \
                    words[1].upper() in (b"OK", b"NO", b"BAD"):
                out.append((words[0].decode("utf-8", "backslashreplace"),
                            words[1].upper().decode()))
    return out


def outcome(proto: str, status: str) -> str | None:
    """success / failure of a login reply, or None when it is not final (SMTP 334, a
    POP3 +OK to USER is handled by the session)."""
    if proto == "smtp":
        code = int(status)
        return "success" if code == 235 else "failure" if 400 <= code < 600 else None
    if proto == "pop3":
        return "success" if status == "+OK" else "failure"
    return "success" if status == "OK" else "failure"
