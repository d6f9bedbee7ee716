"""The whole SigmaHQ rules/ tree loads: how many convert per backend, how many can match
our events (log source we collect, field names our events carry)."""

from __future__ import annotations

from detections.catalog import usable
from detections.rules import BACKENDS, load_pack


def test_sigmahq_tree_converts_on_both_backends(shared_dir, capsys):
    pack = load_pack([shared_dir / "sigma" / "rules"])
    total = len(pack.rules) + len(pack.skipped)
    assert total >= 3000
    base = [r for r in pack.rules if not r.is_correlation]
    lines = []
    for b in BACKENDS:
        converted = sum(1 for r in base if b in r.queries)
        collected = [r for r in base if b in r.queries and r.datasets]
        can_match = sum(1 for r in collected if usable(r, b))
        lines.append(f"{b}: {converted}/{total} convert ({100 * converted / total:.1f}%), "
                     f"{len(collected)} read a log source we collect, {can_match} of them "
                     f"use only fields our events carry")
        assert converted >= 0.99 * total, lines[-1]
        assert len(collected) >= 2500, lines[-1]
        assert can_match >= 0.99 * len(collected), lines[-1]
        # every failure is reported with its reason, none silently lost
        assert all(r.errors.get(b) for r in base if b not in r.queries)
    # keyword (full-text) rules convert on SQLite through FTS5
    keyword_rules = [r for r in base if "message" in r.fields and "sqlite" in r.queries]
    assert len(keyword_rules) >= 80
    assert all("docs_fts MATCH" in r.queries["sqlite"] for r in keyword_rules
               if "message:" in r.queries["elasticsearch"])
    with capsys.disabled():
        print("\nSigmaHQ " + "; ".join(lines))


def test_unparsable_and_unconvertible_rules_are_reported_and_skipped(tmp_path):
    (tmp_path / "a.yml").write_text("title: [unclosed\n")
    (tmp_path / "b.yml").write_text(
        "title: no detection\nid: 0c0c0c0c-0000-4000-8000-000000000001\n"
        "logsource: {product: linux}\n")
    (tmp_path / "c.yml").write_text(
        "title: only punctuation\nid: 0c0c0c0c-0000-4000-8000-000000000002\n"
        "logsource: {product: linux}\ndetection:\n  kw: ['(){:;};']\n  condition: kw\n")
    (tmp_path / "d.yml").write_text(
        "title: fine\nid: 0c0c0c0c-0000-4000-8000-000000000003\n"
        "logsource: {product: linux, service: sshd}\n"
        "detection:\n  kw: ['Accepted password']\n  condition: kw\n")
    pack = load_pack([tmp_path])
    assert {s.path.rsplit("/", 1)[1] for s in pack.skipped} == {"a.yml", "b.yml"}
    assert all(s.reason for s in pack.skipped)
    ids = pack.by_id()
    c = ids["0c0c0c0c-0000-4000-8000-000000000002"]
    assert not c.queries and "no searchable word" in c.errors["sqlite"]
    d = ids["0c0c0c0c-0000-4000-8000-000000000003"]
    assert set(d.queries) == set(BACKENDS)
    assert "docs_fts MATCH '\"Accepted password\"'" in d.queries["sqlite"]
    assert d.queries["elasticsearch"] == 'message:"Accepted password"'
