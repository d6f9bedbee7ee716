"""The event model at the boundary, the query parser, and config overrides."""

from __future__ import annotations

import copy

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soc_core import ecs
from soc_core import query as q
from soc_core.config import ConfigError, load_config


def test_normalize_expands_dotted_and_completes():
    doc = ecs.normalize({"@timestamp": "2026-03-01T16:00:00+08:00", "event.dataset": "auth",
                         "source.ip": "10.0.0.1", "source": {"port": 22}})
    assert doc["@timestamp"] == "2026-03-01T08:00:00.000Z"  # stored in UTC
    assert doc["source"] == {"ip": "10.0.0.1", "port": 22}
    assert doc["event"]["kind"] == "event"
    assert doc["ecs"]["version"].startswith("8.")
    assert len(doc["event"]["id"]) == 32


@pytest.mark.parametrize("bad,field", [
    ({"event": {"dataset": "a"}}, "@timestamp"),
    ({"@timestamp": "2026-02-30T00:00:00.000Z", "event": {"dataset": "a"}}, "@timestamp"),
    ({"@timestamp": "2026-01-01T00:00:00Z", "event": {"dataset": "A-B"}}, "event.dataset"),
    ({"@timestamp": "2026-01-01T00:00:00Z", "event": {"dataset": "a", "kind": "x"}}, "event.kind"),
    ({"@timestamp": "2026-01-01T00:00:00Z", "event": {"dataset": "a"},
      "source": {"ip": "10.0.0.300"}}, "source.ip"),
    ({"@timestamp": "2026-01-01T00:00:00Z", "event": {"dataset": "a"},
      "destination": {"port": 70000}}, "destination.port"),
    ({"@timestamp": "2026-01-01T00:00:00Z", "event": {"dataset": "a"}, "message": 5}, "message"),
    ([1, 2], "JSON object"),
    # unhashable values where a name is expected: rejected, not a crash of the whole batch
    ({"@timestamp": "2026-01-01T00:00:00Z", "event": {"dataset": ["a"]}}, "event.dataset"),
    ({"@timestamp": "2026-01-01T00:00:00Z", "event": {"dataset": "a", "kind": {}}},
     "event.kind"),
    ({"@timestamp": "2026-01-01T00:00:00Z", "event.dataset": "a", "host": {"ip": [1]}},
     "host.ip"),
    ({"@timestamp": "2026-01-01T00:00:00Z", "event": {"dataset": "a"}, "x": {1, 2}}, "JSON"),
])
@pytest.mark.parametrize("check", [ecs.normalize, ecs.prepare])
def test_invalid_events_name_the_field(bad, field, check):
    with pytest.raises(ecs.EventError) as err:
        check(copy.deepcopy(bad))
    assert field in str(err.value)


_KEY = st.text(alphabet='ab.\\"\u7528:{}', min_size=1, max_size=6)
_SCALAR = st.one_of(st.none(), st.integers(-5, 5), st.text(alphabet='a.\\":,}', max_size=6))
_TREE = st.recursive(_SCALAR, lambda kids: st.dictionaries(_KEY, kids, max_size=4), max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(extra=st.dictionaries(_KEY, _TREE, max_size=5), ecs_given=st.booleans(),
       kind=st.sampled_from([None, "event", "alert"]))
def test_prepare_is_normalize_plus_json(extra, ecs_given, kind):
    """The stores' fast path (dotted keys found in the JSON text, `ecs` appended to it) gives
    exactly what `normalize` and a fresh serialisation give, whatever the keys hold."""
    event = {"dataset": "a.b", **({"kind": kind} if kind else {})}
    doc = {"@timestamp": "2026-01-01T00:00:00.000Z", "event": event, **extra}
    if ecs_given:
        doc["ecs"] = {"version": "8.0.0"}
    try:
        expected = ecs.normalize(copy.deepcopy(doc))
    except ecs.EventError as exc:
        with pytest.raises(ecs.EventError) as err:
            ecs.prepare(copy.deepcopy(doc))
        assert str(err.value) == str(exc)
        return
    got = ecs.prepare(copy.deepcopy(doc))
    assert got.doc == expected
    assert got.json == orjson.dumps(expected)
    assert orjson.loads(got.json) == expected
    assert (got.family, got.id, got.dataset, got.kind) == (
        ecs.family_of(expected), expected["event"]["id"], expected["event"]["dataset"],
        expected["event"]["kind"])
    assert got.millis == ecs.to_millis(expected["@timestamp"])


def test_ids_are_deterministic():
    a = ecs.make_event("network.flow", 1_700_000_000, ("cap.pcap", 42), {"source.ip": "1.2.3.4"})
    b = ecs.make_event("network.flow", 1_700_000_000, ("cap.pcap", 42), {"source.ip": "1.2.3.4"})
    c = ecs.make_event("network.flow", 1_700_000_000, ("cap.pcap", 43), {"source.ip": "1.2.3.4"})
    assert a["event"]["id"] == b["event"]["id"] != c["event"]["id"]
    doc = {"@timestamp": "2026-01-01T00:00:00Z", "event": {"dataset": "x"}, "message": "m"}
    assert ecs.normalize(dict(doc, event={"dataset": "x"}))["event"]["id"] == \
        ecs.normalize(dict(doc, event={"dataset": "x"}))["event"]["id"]


def test_family_routing():
    def fam(**event):
        return ecs.family_of({"event": event})
    assert fam(kind="metric") == "metrics"
    assert fam(kind="alert") == "alerts"
    assert fam(kind="asset") == "assets"
    assert fam(dataset="govsoc.audit") == "audit"
    assert fam(dataset="govsoc.playbook_run") == "playbook_runs"
    assert fam(dataset="network.dns") == "events"


def test_query_ast():
    assert q.parse('a:1 b:"x y" OR NOT c:z*') == q.Or((
        q.And((q.Term("a", "1"), q.Term("b", "x y", True))),
        q.Not(q.Wildcard("c", "z*")),
    ))
    assert q.parse("port:[1 TO *]") == q.Range("port", "1", None, True, True)
    assert q.parse("port:<1024") == q.Range("port", None, "1024", True, False)
    assert q.parse("登录失败") == q.Term(None, "登录失败")
    assert q.parse("f:a\\:b") == q.Term("f", "a:b")
    assert q.parse("  ") is None


@given(st.text(max_size=40))
def test_parser_never_crashes(text):
    try:
        q.parse(text)
    except q.QueryError:
        pass


def test_config_file_and_env(tmp_path, monkeypatch):
    cfg_file = tmp_path / "govsoc.toml"
    cfg_file.write_text('store_url = "sqlite:///x.db"\nretention_days = 200\n[crypto]\nkdf = "a"\n')
    cfg = load_config(cfg_file)
    assert cfg.store_url == "sqlite:///x.db"
    assert cfg.get("crypto.kdf") == "a"
    monkeypatch.setenv("GOVSOC_RETENTION_DAYS", "365")
    monkeypatch.setenv("GOVSOC_CRYPTO_KDF", "b")
    assert cfg.get("retention_days") == 365
    assert cfg.get("crypto.kdf") == "b"
    monkeypatch.setenv("GOVSOC_RETENTION_DAYS", "many")
    with pytest.raises(ConfigError):
        cfg.get("retention_days")
    (tmp_path / "bad.toml").write_text("store_url = ")
    with pytest.raises(ConfigError):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    monkeypatch.delenv("GOVSOC_STORE_URL", raising=False)
    assert load_config().store_url == "sqlite:///./data/govsoc.db"


def test_env_override_of_a_list_key(tmp_path, monkeypatch):
    cfg_file = tmp_path / "govsoc.toml"
    cfg_file.write_text('[logs]\npaths = ["/var/log/auth.log"]\n')
    monkeypatch.setenv("GOVSOC_LOGS_PATHS", "/a.log,/b.log")
    assert load_config(cfg_file).get("logs.paths") == ["/a.log", "/b.log"]


def test_sqlite_path_that_cannot_exist_is_a_store_error(tmp_path):
    from soc_core.store import StoreUnavailable, open_store

    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreUnavailable):
        open_store(f"sqlite:///{tmp_path}/file/sub/govsoc.db")
