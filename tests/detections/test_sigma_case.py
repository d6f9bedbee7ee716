"""Sigma's own matching semantics on Windows logs, the same on both stores: strings
case-insensitive unless `|cased`, `|re` case-sensitive unless `|i` and unanchored, `null`
meaning absent, and fields of records that keep their data in UserData found by their
Sigma name. Real records from ../shared/evtx where the evasion shows (a `dism /online`
that escaped a rule written `/Online`), crafted ones for the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.logs import read_evtx
from detections.engine import Engine
from detections.rules import load_pack
from soc_core import ecs

SAMPLES = "evtx/EVTX-ATTACK-SAMPLES"
REAL = {  # label -> (file, which record: event id and a field that picks it)
    "dism_online": ("Privilege Escalation/Sysmon_UACME_23.evtx", "1", "dism.exe"),
    "log_cleared_104": ("Defense Evasion/DE_104_system_log_cleared.evtx", "104", ""),
    "log_cleared_1102": ("Defense Evasion/DE_1102_security_log_cleared.evtx", "1102", ""),
}
T = 1_767_225_600  # crafted events: 2026-01-01


def _sysmon(label: str, event_id: int, data: dict[str, str], i: int) -> dict:
    return ecs.make_event("windows.sysmon_operational", T + i, ("sigma-case", label), {
        "event.code": str(event_id), "host.name": "ws-07",
        "winlog.channel": "Microsoft-Windows-Sysmon/Operational",
        "winlog.provider_name": "Microsoft-Windows-Sysmon",
        "winlog.event_id": str(event_id), "winlog.event_data": data})


CRAFTED = {
    # SigmaHQ's registry-hive rule says `\NTUSER.DAT`; Windows writes the name in any case
    "hive_lower": _sysmon("hive_lower", 11, {"TargetFilename": "C:\\Temp\\ntuser.dat"}, 1),
    "hive_upper": _sysmon("hive_upper", 11, {"TargetFilename": "C:\\Temp\\NTUSER.DAT"}, 2),
    # ...and filters the profile copy with `|re|i` anchored on both ends
    "hive_profile": _sysmon("hive_profile", 11,
                            {"TargetFilename": "C:\\Users\\bob\\ntuser.dat"}, 3),
    "hive_profile_sub": _sysmon("hive_profile_sub", 11,
                                {"TargetFilename": "C:\\Users\\bob\\x\\NTUSER.DAT"}, 4),
    "umlaut": _sysmon("umlaut", 1, {"Image": "C:\\Tools\\ÜBERWACH.EXE",
                                    "CommandLine": "ÜBERWACH.EXE /Ä"}, 5),
    # a command line padded past 1,024 characters (ECS's keyword limit): no longer out of
    # sight of every rule on Elasticsearch
    "long_cmdline": _sysmon("long_cmdline", 1, {
        "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
        "CommandLine": "powershell.exe" + " " * 3000 + "-EncodedCommand SQBFAFgA"}, 7),
    "auth": ecs.make_event("system.auth", T + 6, ("sigma-case", "auth"), {
        "event.category": "authentication", "host.name": "gov-web-01",
        "message": "Accepted publickey for ROOT from 192.0.2.8 port 2222 ssh2"}),
}

RULES = {
    "dism_online": """
logsource: {product: windows, category: process_creation}
detection:
  sel: {Image|endswith: '\\Dism.exe', CommandLine|contains: '/Online'}
  condition: sel""",
    "dism_online_cased": """
logsource: {product: windows, category: process_creation}
detection:
  sel: {Image|endswith: '\\Dism.exe', CommandLine|contains|cased: '/Online'}
  condition: sel""",
    "dism_online_cased_exact": """
logsource: {product: windows, category: process_creation}
detection:
  sel: {CommandLine|contains|cased: '/online /norestart'}
  condition: sel""",
    "re_default_cased": """
logsource: {product: windows, category: process_creation}
detection:
  sel: {CommandLine|re: 'DISM\\.EXE'}
  condition: sel""",
    "re_i": """
logsource: {product: windows, category: process_creation}
detection:
  sel: {CommandLine|re|i: 'DISM\\.EXE" /ONLINE'}
  condition: sel""",
    "re_unanchored": """
logsource: {product: windows, category: process_creation}
detection:
  sel: {CommandLine|re: 'dism\\.exe" /on[a-z]+e'}
  condition: sel""",
    "wildcard_mixed": """
logsource: {product: windows, category: process_creation}
detection:
  sel: {Image: 'c:\\windows\\SYSTEM32\\d?sm.*'}
  condition: sel""",
    "user_data_field": """
logsource: {product: windows, service: system}
detection:
  sel: {EventID: 104, SubjectUserName: 'USER01'}
  condition: sel""",
    "user_data_security": """
logsource: {product: windows, service: security}
detection:
  sel: {EventID: 1102, SubjectDomainName|startswith: 'exam', SubjectUserName|cased: 'user01'}
  condition: sel""",
    "user_data_not_null": """
logsource: {product: windows, service: system}
detection:
  sel: {EventID: 104}
  no_user: {SubjectUserName: null}
  condition: sel and not no_user""",
    "unicode": """
logsource: {product: windows, category: process_creation}
detection:
  sel: {CommandLine|contains: 'überwach.exe /ä'}
  condition: sel""",
    # a folder with its trailing backslash, another regex after it: the query Elasticsearch
    # refused whole (the parser took the slash after the backslash as escaped)
    "trailing_backslash": """
logsource: {product: windows, category: process_creation}
detection:
  sel: {CurrentDirectory: 'c:\\windows\\SYSTEM32\\', Image|endswith: '\\Dism.exe'}
  condition: sel""",
    # `|windash` (-, /, dashes) under an AND: every form, not only the first
    "windash_in_and": """
logsource: {product: windows, category: process_creation}
detection:
  sel: {Image|endswith: '\\Dism.exe', CommandLine|contains|windash: ' -online'}
  condition: sel""",
    "long_value": """
logsource: {product: windows, category: process_creation}
detection:
  sel: {Image|endswith: '\\powershell.exe', CommandLine|contains: '-encodedcommand'}
  condition: sel""",
    "keyword": """
logsource: {product: linux, service: auth}
detection:
  keywords: ['publickey for root']
  condition: keywords""",
}
# SigmaHQ's own rules, as shipped
SIGMAHQ = ["windows/file/file_event/file_event_win_susp_registry_hive_file_creation.yml",
           "windows/builtin/system/microsoft_windows_eventlog/"
           "win_system_susp_eventlog_cleared.yml"]
EXPECTED = {
    "dism_online": {"dism_online"},
    "dism_online_cased": set(),
    "dism_online_cased_exact": {"dism_online"},
    "re_default_cased": set(),
    "re_i": {"dism_online"},
    "re_unanchored": {"dism_online"},
    "wildcard_mixed": {"dism_online"},
    "user_data_field": {"log_cleared_104"},
    "user_data_security": {"log_cleared_1102"},
    "user_data_not_null": {"log_cleared_104"},
    "unicode": {"umlaut"},
    "trailing_backslash": {"dism_online"},
    "windash_in_and": {"dism_online"},
    "long_value": {"long_cmdline"},
    "keyword": {"auth"},
    "Registry Hive File Staged Outside Standard User Profile Path": {"hive_lower", "hive_upper",
                                               "hive_profile_sub"},
    "Important Windows Eventlog Cleared": {"log_cleared_104"},
}


@pytest.fixture(scope="module")
def case_pack(tmp_path_factory, shared_dir):
    folder = tmp_path_factory.mktemp("sigma-case-rules")
    for n, (name, body) in enumerate(RULES.items()):
        (folder / f"{name}.yml").write_text(
            f"title: {name}\nid: 5e1c0000-0000-4000-8000-{n:012d}\nlevel: high\n"
            f"tags: [attack.execution, attack.t1059]\n{body.lstrip()}\n", encoding="utf-8")
    pack = load_pack([folder, *(shared_dir / "sigma" / "rules" / p for p in SIGMAHQ)])
    assert not pack.skipped and all(len(r.queries) == 2 for r in pack.rules), \
        [(r.title, r.errors) for r in pack.rules if r.errors] or pack.skipped
    return pack


@pytest.fixture(scope="module")
def case_events(shared_dir) -> dict[str, dict]:
    events = dict(CRAFTED)
    for label, (name, event_id, needle) in REAL.items():
        docs: list[dict] = []
        read_evtx(str(shared_dir / SAMPLES / name), docs.append)
        picked = [d for d in docs if d["winlog"]["event_id"] == event_id
                  and needle in str(d["winlog"].get("event_data", {})).lower()]
        events[label] = picked[0]
    # the evasion as found: a lowercase switch the rule wrote capitalised
    assert "/online" in events["dism_online"]["winlog"]["event_data"]["CommandLine"]
    assert "user_data" in events["log_cleared_104"]["winlog"]
    return events


def matches(store, pack, events: dict[str, dict]) -> dict[str, set[str]]:
    """rule title -> labels of the events its query matches, over all time"""
    res = store.write(list(events.values()), refresh=True)
    assert not res.rejected, res.rejected[:2]
    label = {d["event"]["id"]: name for name, d in events.items()}
    engine = Engine(store, pack)
    lo, hi = ecs.to_millis("2015-01-01T00:00:00Z"), ecs.to_millis("2027-01-01T00:00:00Z")
    return {r.title: {label.get(d["event"]["id"], d["event"]["id"])
                      for d in engine.fetch(r, lo, hi)}
            for r in pack.rules}


def test_sigma_semantics_on_windows_logs(store, case_pack, case_events):
    assert matches(store, case_pack, case_events) == EXPECTED


def test_lucene_regex_translation():
    from detections.backends import delimited, lucene_regex

    assert lucene_regex("^C:\\\\Users\\\\[^\\\\]+\\\\NTUSER\\.DAT$", ignore_case=True) == \
        "[Cc]:\\\\[Uu][sS][eE][rR][sS]\\\\[^\\\\]+\\\\[Nn][Tt][Uu][Ss][Ee][Rr]\\.[Dd][Aa][Tt]"
    assert lucene_regex("a|^b\\d$") == ".*a.*|b[0-9]"
    assert lucene_regex("(?:x|y)+?@") == ".*(x|y)+\\@.*"
    # a literal backslash before the closing slash: a class, so the slash still closes
    assert delimited(lucene_regex("32\\\\$")) == "/.*32[\\\\]/"
    assert delimited("a\\\\.*") == "/a\\\\.*/"


def test_rules_files_path_exists(shared_dir):
    for p in SIGMAHQ:
        assert Path(shared_dir / "sigma" / "rules" / p).is_file()


# Elasticsearch indexes keywords up to 8,191 characters (the store's ignore_above, the most
# Lucene's 32,766-byte term takes in any UTF-8): a longer value (two directory attribute
# values of 10,914 characters in these samples) matches nothing there but does on SQLite, a
# known difference left out of this comparison
_INDEXED = 8191
DIFF_FOLDERS = ("Persistence", "Defense Evasion", "Credential Access", "Execution")


def _short_values(doc) -> bool:
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and len(node) > _INDEXED:
            return False
    return True


@pytest.mark.es
def test_sigmahq_rules_match_the_same_real_records_on_both_stores(sqlite_store, es_store,
                                                                   shared_dir):
    """The differential check on real logs: SigmaHQ's Windows builtin and file-event
    rules over the real records of four tactics, the same (rule, record) matches on both
    stores, among them matches only case-insensitive matching makes."""
    rules = shared_dir / "sigma" / "rules" / "windows"
    pack = load_pack([rules / "builtin" / "system", rules / "builtin" / "security",
                      rules / "file" / "file_event"])
    pack.rules = [r for r in pack.rules if not r.is_correlation and r.datasets
                  and len(r.queries) == 2]
    assert len(pack.rules) >= 300
    docs: list[dict] = []
    for folder in DIFF_FOLDERS:
        for path in sorted((shared_dir / SAMPLES / folder).glob("*.evtx")):
            read_evtx(str(path), docs.append)
    events = {d["event"]["id"]: d for d in docs if _short_values(d)}
    assert len(events) >= 1500
    lite, es = (matches(s, pack, events) for s in (sqlite_store, es_store))
    assert lite == es
    fired = {title for title, found in lite.items() if found}
    assert len(fired) >= 20, sorted(fired)
    # silent on these samples while strings matched case-sensitively (the same rules
    # compiled with every string `|cased` match none of their records here)
    assert {"New Custom Shim Database Created",
            "WMI Persistence - Script Event Consumer File Write"} <= fired


@pytest.mark.es
def test_expanded_values_match_the_same_real_records_on_both_stores(sqlite_store, es_store,
                                                                     shared_dir):
    """SigmaHQ's Windows rules whose values expand to several forms (`|windash`: -, /
    and the dashes; `|base64offset`) over every real record: the same (rule, record)
    matches on both stores. On Elasticsearch such a test under an AND lost its
    parentheses and only its first form stayed required (`/all` escaped a `-all` rule)."""
    files = [p for p in sorted((shared_dir / "sigma" / "rules" / "windows").rglob("*.yml"))
             if "|windash" in (text := p.read_text(encoding="utf-8")) or "base64offset" in text]
    pack = load_pack(files)
    pack.rules = [r for r in pack.rules if not r.is_correlation and r.datasets
                  and len(r.queries) == 2]
    assert len(pack.rules) >= 80
    docs: list[dict] = []
    for path in sorted((shared_dir / SAMPLES).rglob("*.evtx")):
        read_evtx(str(path), docs.append)
    events = {d["event"]["id"]: d for d in docs if _short_values(d)}
    ids = set(events)
    lite, es = ({title: found & ids for title, found in matches(s, pack, events).items()}
                for s in (sqlite_store, es_store))
    assert lite == es
    # the forms beyond the first are what the real records hold here
    assert sum(map(len, lite.values())) >= 20
