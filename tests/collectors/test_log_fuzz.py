"""Property tests: any bytes in a log file never stop an import, and every line is
accounted for (an event, a banner, or a skipped record with a reason)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.logs import LogReader, parser_for
from soc_core import ecs

_GOOD = {
    "auth": b"Nov 23 10:00:01 h sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2",
    "syslog": b"<13>Nov 23 10:00:01 h app[2]: hello",
    "auditd": b"type=USER_AUTH msg=audit(1700000000.1:9): pid=1 uid=0 msg='acct=\"x\" res=failed'",
}
lines = st.one_of(st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" ")),
                  st.sampled_from(list(_GOOD.values())),
                  st.text(max_size=120).map(lambda t: t.replace("\n", " ").encode()))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(sorted(_GOOD)), body=st.lists(lines, max_size=30),
       trailing_newline=st.booleans())
def test_any_bytes_are_accounted_for(fmt, body, trailing_newline):
    data = b"\n".join(body) + (b"\n" if trailing_newline and body else b"")
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.log"
        p.write_bytes(data)
        out: list[dict] = []
        stats = LogReader(p, parser_for(fmt), out.append).import_once()
    n_lines = len(data.split(b"\n")) - (1 if data.endswith(b"\n") else 0) if data else 0
    assert stats.lines == n_lines
    for doc in out:
        ecs.normalize(doc)  # whatever came in, what goes out is a valid event
    if fmt != "auditd":  # auditd joins several lines into one event
        assert stats.events_total + stats.ignored_total + stats.bad_total == stats.lines
    else:
        assert stats.events_total <= stats.lines - stats.bad_total - stats.ignored_total
    assert len({d["event"]["id"] for d in out}) == len(out)
