"""The API's audit trail: every state change and privileged read is recorded with who,
role, department, action, object, outcome, source and request id; an action acknowledged
to the client is in the trail even when the store was down meanwhile; the chain verifies."""

from __future__ import annotations

import threading

from api_helpers import b64

from soc_core.audit import AuditTrail, verify


def test_actions_and_reads_are_audited(api):
    api.ctx.identity  # noqa: B018
    h = api.token("analyst", departments=["wjw"])
    r = api.client.get("/events", headers={**h, "X-Request-ID": "req-42"},
                       params={"q": "source.ip:10.1.0.1"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-42"
    rec = [d for d in api.ctx.trail.recent if d["event"]["action"] == "events.search"][-1]
    assert rec["user"]["name"] == "t-analyst"
    assert rec["event"]["outcome"] == "success"
    assert "req-42" in str(rec) and "source.ip:10.1.0.1" in str(rec)
    assert "wjw" in str(rec)
    denied = api.client.get("/users", headers=h)
    assert denied.status_code == 403
    assert any(d["event"]["action"] == "access.denied" for d in api.ctx.trail.recent)
    # and the chain of what was written verifies
    assert api.ctx.trail.flush(30)
    api.ctx.store.refresh()
    from soc_core.store import Selection

    stored = {d["event"]["action"] for d in api.ctx.store.scan(Selection(family="audit"))}
    assert {"events.search", "access.denied"} <= stored
    report = verify(api.ctx.store)
    assert report.ok, report.to_dict()


class FlakyStore:
    """The real store behind a switch: while `down` is set every write fails as a store
    outage does (the API's own reads use the real store directly)."""

    def __init__(self, store):
        self.store = store
        self.down = threading.Event()

    def __getattr__(self, name):
        return getattr(self.store, name)

    def write(self, docs, **kw):
        from soc_core.store import StoreUnavailable

        if self.down.is_set():
            raise StoreUnavailable("store down (test)")
        return self.store.write(docs, **kw)


def test_acknowledged_actions_survive_a_store_outage(api_sqlite, tmp_path):
    api = api_sqlite
    flaky = FlakyStore(api.ctx.store)
    api.ctx.trail.close()
    api.ctx.trail = AuditTrail(tmp_path / "audit-outage", flaky, name="api")
    if api.ctx.crypto is not None:
        api.ctx.crypto.close()
        api.ctx.crypto = None
    key = api.ctx.crypto_service().create_key("sign").id
    h = api.token("service", keys=[key])
    flaky.down.set()
    acknowledged = []
    for i in range(40):
        r = api.client.post("/crypto/sign", headers=h, json={"key_id": key,
                                                             "data": b64(f"m{i}".encode())})
        assert r.status_code == 200
        acknowledged.append(r.json()["signature"])
    assert not api.ctx.trail.flush(1)  # nothing can reach the store now
    flaky.down.clear()
    assert api.ctx.trail.flush(30)
    api.ctx.store.refresh()
    from soc_core.store import Selection

    recs = [d for d in api.ctx.store.scan(Selection(family="audit"))
            if d["event"]["action"] == "crypto.sign"]
    assert len(recs) == len(acknowledged) == 40
    assert len({d["event"]["id"] for d in recs}) == 40
