"""The evaluator's rule selection (groups by channel/event id/provider and by which fields
a record holds, then the literal prefilter over the fields the rules read) never drops a
rule that matches: crafted rules whose values differ in case from the record's, use
`|contains`, `|cased`, `null`, NOT, a field kept in UserData or nothing indexable at all,
each over real EVTX records, give exactly the records their own predicate accepts when
run on every record with no index."""

from __future__ import annotations

import pytest

from collectors.logs import read_evtx
from detections import evaluator
from detections.evaluator import Evaluator, Event, compile_rules, predicate
from detections.rules import load_pack

SAMPLES = "evtx/EVTX-ATTACK-SAMPLES"
FILES = ["Privilege Escalation/Sysmon_UACME_23.evtx",  # a `dism.exe ... /online` process
         "Defense Evasion/DE_104_system_log_cleared.evtx",  # data in UserData
         "Defense Evasion/DE_1102_security_log_cleared.evtx",
         "Lateral Movement/LM_4624_mimikatz_sekurlsa_pth_source_machine.evtx"]

RULES = {  # name -> (detection, at least this many records it must match)
    # the record writes `C:\Windows\System32\Dism.exe`-like paths in its own case
    "eq_other_case": ("sel: {Image: 'C:\\WINDOWS\\SYSTEM32\\DISM.EXE'}\n  condition: sel", 1),
    "endswith_other_case": ("sel: {Image|endswith: '\\DISM.EXE'}\n  condition: sel", 1),
    "contains": ("sel: {CommandLine|contains: 'DISM.EXE\" /ONLINE'}\n  condition: sel", 1),
    "contains_cased": ("sel: {CommandLine|contains|cased: '/online'}\n  condition: sel", 1),
    "short_literal": ("sel: {CommandLine|contains: '/'}\n  condition: sel", 1),
    "regex_caseless": ("sel: {CommandLine|re|i: 'dism\\.exe.{1,4}/ONLINE'}\n  condition: sel",
                       1),
    # nothing to index: NOT of a test, true on every record without the field
    "not_only": ("sel: {Image|endswith: '\\no-such-tool.exe'}\n  condition: not sel", 100),
    "image_null": ("sel: {Image: null}\n  condition: sel", 10),
    "exists_false": ("sel: {Image|exists: false}\n  condition: sel", 10),
    # one branch indexable, the other only by its field being there
    "or_across_fields": ("a: {Image|endswith: '\\dism.exe'}\n  b: {TargetUserName|re: '.'}\n"
                         "  condition: a or b", 2),
    # UserData (the System log's 104): found by its Sigma name, as Winlogbeat keeps it
    "user_data": ("sel: {EventID: 104}\n  no_user: {SubjectUserName: null}\n"
                  "  condition: sel and not no_user", 1),
    "user_data_value": ("sel: {SubjectUserName|contains: 'USER0'}\n  condition: sel", 1),
}


@pytest.fixture(scope="module")
def index_rules(tmp_path_factory):
    folder = tmp_path_factory.mktemp("index-rules")
    for n, (name, (body, _)) in enumerate(RULES.items()):
        (folder / f"{name}.yml").write_text(
            f"title: {name}\nid: 1d0e0000-0000-4000-8000-{n:012d}\nlevel: high\n"
            f"logsource: {{product: windows}}\ndetection:\n  {body}\n", encoding="utf-8")
    pack = load_pack([folder])
    compiled, errors = compile_rules(pack.runnable("sqlite"))
    assert not errors and len(compiled) == len(RULES)
    titles = {r.id: r.title for r in pack.rules}
    return compiled, [titles[c.id] for c in compiled]


@pytest.mark.parametrize("layouts", [True, False], ids=["by-layout", "past-the-group-cap"])
def test_the_index_drops_no_matching_rule(index_rules, shared_dir, monkeypatch, layouts):
    if not layouts:  # past MAX_GROUPS records are grouped without their layout
        monkeypatch.setattr(evaluator, "MAX_GROUPS", 0)
    index_rules, names = index_rules
    records: list = []
    for name in FILES:
        read_evtx(str(shared_dir / SAMPLES / name), records.append, lazy=True)
    assert len(records) > 100
    ev = Evaluator(index_rules)
    found = dict.fromkeys(names, 0)
    for rec in records:
        got = sorted(ev.match(rec))
        # every rule's own predicate on this record, no group, layout or literal involved
        event = Event(None, record=rec)
        want = [i for i, c in enumerate(index_rules)
                if rec.dataset in c.datasets and predicate(c.ir)(event)]
        assert got == want, (rec.id, [index_rules[i].id for i in set(got) ^ set(want)])
        for i in got:
            found[names[i]] += 1
    short = {n: found[n] for n, (_, least) in RULES.items() if found[n] < least}
    assert not short, short  # each crafted rule meets the records it was written for
    assert len(ev._groups) > 3  # records were told apart (channel, event id, fields)
