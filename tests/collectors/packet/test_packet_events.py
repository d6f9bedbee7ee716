"""The packet collector's event construction equals soc_core's make_event."""

from __future__ import annotations

import copy

from hypothesis import example, given, settings
from hypothesis import strategies as st
from packet_craft import standard_mix

from collectors.packet import events as pev
from collectors.packet import read_pcaps
from soc_core import ecs


@settings(max_examples=300, deadline=None)
@given(ts=st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
@example(ts=35184373.0529995)  # ts * 1e6 lands on a tie that the fraction does not
@example(ts=1_700_000_000.9999996)  # rounds up into the next second
def test_iso_time_equals_core_format(ts):
    assert pev.iso_time(ts) == ecs.format_time(ecs.parse_time(ts))


def test_make_event_equals_core(tmp_path):
    events, _ = read_pcaps([standard_mix().write(tmp_path / "m.pcap")])
    seen = set()
    for e in events:
        dataset = e["event"]["dataset"]
        fields = copy.deepcopy(e)
        del fields["event"]["dataset"], fields["event"]["id"], fields["@timestamp"]
        key = f"k|{e['event']['id']}"
        ours = pev.make_event(dataset, e["@timestamp"], key, copy.deepcopy(fields))
        core = ecs.make_event(dataset, e["@timestamp"], key, copy.deepcopy(fields))
        assert ours == core
        seen.add(dataset)
    assert seen == {"network.flow", "network.dns", "network.http", "network.tls"}
