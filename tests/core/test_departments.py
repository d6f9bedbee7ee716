"""Departments (委办局) from govsoc.toml: validation with one clear line, longest-prefix and
host-pattern lookup, registry assignments, and stamping by EventStore.write on both stores."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from soc_core import ecs
from soc_core.config import Config, ConfigError, load_config
from soc_core.departments import Departments
from soc_core.store import Selection, open_store

GOVSOC = str(Path(sys.executable).parent / "govsoc")
T = "2026-03-01T08:00:00.000Z"

CONFIG = """
[[departments]]
id = "wjw"
name = "市卫健委"
cidrs = ["10.1.0.0/16"]
hosts = ["wjw-*"]

[[departments]]
id = "jyj"
name = "市教育局"
cidrs = ["10.1.9.0/24", "2001:db8:9::/48"]
hosts = ["wjw-school-*"]

[[departments]]
id = "gaj"
name = "市公安局"
cidrs = ["10.2.0.0/16"]
"""


def _departments(tmp_path) -> Departments:
    (tmp_path / "govsoc.toml").write_text(CONFIG, encoding="utf-8")
    return Departments.from_config(load_config(tmp_path / "govsoc.toml"))


@pytest.mark.parametrize(("tables", "message"), [
    ([{"id": "wjw", "cidrs": ["10.1.0.0/33"]}],
     "departments[0] (id 'wjw'): bad CIDR '10.1.0.0/33'"),
    ([{"id": "wjw", "cidrs": ["10.1.0.5/16"]}], "has host bits set"),
    ([{"id": "wjw"}, {"id": "wjw"}], "departments: duplicate id 'wjw'"),
    ([{"id": "Wei Jian"}], "departments[0] (id 'Wei Jian'): bad id 'Wei Jian'"),
    ([{"id": "a", "cidrs": ["10.0.0.0/8"]}, {"id": "b", "cidrs": ["10.0.0.0/8"]}],
     "CIDR 10.0.0.0/8 is given to both 'a' and 'b'"),
    ([{"id": "a", "cidr": ["10.0.0.0/8"]}], "unknown key 'cidr'"),
    ([{"id": "a", "hosts": "web-*"}], "hosts must be a list of strings"),
    ({"id": "a"}, "use [[departments]] tables"),
])
def test_a_bad_department_table_is_one_clear_line(tables, message):
    with pytest.raises(ConfigError) as err:
        Departments.from_config(Config(values={"departments": tables}))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_bad_config_stops_a_command_with_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "bad.toml").write_text('[[departments]]\nid = "wjw"\ncidrs = ["10.1.0.0/33"]\n')
    (tmp_path / "e.ndjson").write_text(f'{{"@timestamp": "{T}", "event": {{"dataset": "x"}}}}\n')
    env = {**os.environ, "GOVSOC_CONFIG": str(tmp_path / "bad.toml"),
           "GOVSOC_STORE_URL": f"sqlite:///{tmp_path}/g.db"}
    r = subprocess.run([GOVSOC, "ingest", str(tmp_path / "e.ndjson")], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: departments[0] (id 'wjw'): bad CIDR '10.1.0.0/33': '10.1.0.0/33' does not "
        "appear to be an IPv4 or IPv6 network"]
    assert not (tmp_path / "g.db").exists()


def test_lookup_longest_prefix_and_most_specific_pattern(tmp_path):
    d = _departments(tmp_path)
    assert [x.id for x in d.all()] == ["wjw", "jyj", "gaj"]
    assert d.get("gaj").name == "市公安局"
    assert d.for_address("10.1.200.1").id == "wjw"
    assert d.for_address("10.1.9.77").id == "jyj"  # /24 inside wjw's /16
    assert d.for_address("::ffff:10.1.9.77").id == "jyj"
    assert d.for_address("2001:db8:9::5").id == "jyj"
    assert d.for_address("10.3.0.1") is None and d.for_address("not an ip") is None
    assert d.for_host("WJW-web01").id == "wjw"
    assert d.for_host("wjw-school-3").id == "jyj"  # the more specific pattern
    assert d.for_host("gaj-db") is None


def _ev(n: int, **fields) -> dict:
    return {"@timestamp": T, "event": {"dataset": "test.dept", "id": f"e{n}"}, **fields}


def test_store_write_stamps_organization_on_both_stores(store, tmp_path):
    store.use_departments(_departments(tmp_path))
    res = store.write([
        _ev(1, host={"name": "wjw-web01"}),
        _ev(2, source={"ip": "10.1.2.3"}, destination={"ip": "10.2.0.5"}),
        _ev(3, source={"ip": "203.0.113.9"}, destination={"ip": "10.1.9.7"}),
        _ev(4, source={"ip": "203.0.113.9"}, destination={"ip": "198.51.100.1"}),
        _ev(5, source={"ip": "10.2.0.9"}, organization={"id": "other", "name": "其他"}),
        {"@timestamp": T, "event": {"dataset": "govsoc.audit", "id": "a1"},
         "source": {"ip": "10.1.2.3"}},
    ], refresh=True)
    assert res.written == 6 and not res.rejected
    got = {d["event"]["id"]: d for f in ("events", "audit")
           for d in store.scan(Selection(family=f))}
    assert got["e1"]["organization"] == {"id": "wjw", "name": "市卫健委"}
    assert got["e2"]["organization"]["id"] == "wjw"  # the source side first...
    assert got["e2"]["govsoc"]["departments"] == ["wjw", "gaj"]  # ...both can see it
    assert got["e3"]["organization"] == {"id": "jyj", "name": "市教育局"}
    assert "organization" not in got["e4"] and "govsoc" not in got["e4"]  # unassigned
    assert got["e5"]["organization"]["id"] == "other"  # never overwritten
    assert "organization" not in got["a1"]  # the audit trail is not stamped
    hits = store.search(Selection(filters={"organization.id": "jyj"})).hits
    assert [h["event"]["id"] for h in hits] == ["e3"]


def test_registry_assignment_overrides_config_and_survives_a_new_sweep(store, tmp_path):
    depts = _departments(tmp_path)
    store.use_departments(depts)
    asset = {"@timestamp": T, "event": {"dataset": "assets", "kind": "asset", "id": "a-lab"},
             "host": {"name": "wjw-lab", "ip": ["10.1.4.4", "127.0.0.1"]}}
    store.write([dict(asset)], refresh=True)
    (stamped,) = store.scan(Selection(family="assets"))
    assert stamped["organization"]["id"] == "wjw"  # from the config, and marked so
    assert stamped["govsoc"]["asset"]["department_source"] == "config"
    # the registry gives the host to 公安局: it decides for its name and its addresses
    store.write([{**asset, "organization": {"id": "gaj", "name": "市公安局"}}], refresh=True)
    store.write([_ev(1, host={"name": "WJW-LAB"}), _ev(2, source={"ip": "10.1.4.4"}),
                 _ev(3, source={"ip": "127.0.0.1"})], refresh=True)
    # another process opening the store reads the assignment from the registry
    fresh = _departments(tmp_path)
    store.use_departments(fresh)
    store.write([_ev(4, source={"ip": "10.1.4.4"}), dict(asset)], refresh=True)  # re-sweep
    got = {d["event"]["id"]: d for d in store.scan(Selection())}
    assert [got[i]["organization"]["id"] for i in ("e1", "e2", "e4")] == ["gaj"] * 3
    assert "organization" not in got["e3"]  # loopback belongs to no one
    (swept,) = store.scan(Selection(family="assets"))
    assert swept["organization"]["id"] == "gaj"
    assert "department_source" not in swept.get("govsoc", {}).get("asset", {})


def test_a_store_without_departments_stamps_nothing(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/g.db", departments=Departments()) as s:
        assert not s.departments
        s.write([_ev(1, source={"ip": "10.1.2.3"})])
        (doc,) = s.scan(Selection())
    assert "organization" not in doc


def test_the_fast_stamp_agrees_with_the_general_one(tmp_path):
    """`stamp_prepared` (the store's hot path) and `stamp` give every shape the same
    departments."""
    d = _departments(tmp_path)
    names = [None, "wjw-a", "wjw-school-1", "gaj-x"]
    addrs = [None, "10.1.0.1", "10.1.9.1", "10.2.0.1", "8.8.8.8", ["10.2.3.4", "10.1.0.9"]]
    n = 0
    for name in names:
        for src in addrs:
            for dst in addrs:
                for extra in ({}, {"govsoc": {"x": 1}}, {"host": {"ip": ["10.2.0.9"]}}):
                    doc = _ev(n, **copy.deepcopy(extra))
                    n += 1
                    if name:
                        doc.setdefault("host", {})["name"] = name
                    if src:
                        doc["source"] = {"ip": src}
                    if dst:
                        doc["destination"] = {"ip": dst}
                    slow = copy.deepcopy(doc)
                    d.stamp(slow)
                    fast = d.stamp_prepared(ecs.prepare(doc))
                    assert orjson.loads(fast.json) == ecs.normalize(slow), (name, src, dst)
                    assert fast.doc == orjson.loads(fast.json)
