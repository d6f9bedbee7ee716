"""Notifications against receivers started here: each robot webhook's signature checked as
its vendor checks it, mail over STARTTLS with login, a channel that is down retried without
holding up the others, a restart that neither loses nor doubles a message, and the watcher
that turns new alerts and playbook runs in the store into messages."""

from __future__ import annotations

import logging
import threading

import pytest
from notify_helpers import DING_SECRET, FEISHU_SECRET, WECOM_KEY, MailBox, Receivers, wait_for

from soc_core import ecs
from soc_core.config import Config, ConfigError
from soc_core.notify import (
    Backoff,
    DeliveryError,
    Dispatcher,
    Message,
    Outbox,
    TokenBucket,
    Watcher,
    channels_from_config,
)


@pytest.fixture(scope="module")
def receivers():
    r = Receivers()
    yield r
    r.close()


@pytest.fixture(autouse=True)
def _fresh(receivers):
    receivers.down.clear()
    for v in receivers.received.values():
        v.clear()
    for v in receivers.refused.values():
        v.clear()


def channels(chans: dict, **notify) -> dict:
    return channels_from_config(Config(values={"notify": {"channels": chans, **notify}}))


def msg(i: int, level: str = "high") -> Message:
    return Message(id=f"alert:a{i}", kind="alert", title=f"rule {i}", text=f"- alert id: a{i}",
                   level=level)


def test_each_vendor_checks_our_signature(receivers, caplog):
    caplog.set_level(logging.DEBUG)
    good = channels(receivers.config())
    for name in ("ding", "wecom", "feishu"):
        good[name].send(msg(1))
    assert [len(receivers.received[v]) for v in ("dingtalk", "wecom", "feishu")] == [1, 1, 1]
    assert "rule 1" in receivers.received["dingtalk"][0]["markdown"]["text"]
    assert "rule 1" in receivers.received["feishu"][0]["content"]["text"]
    # a wrong secret or key is refused by the receiver, and not worth retrying
    bad = channels(receivers.config(ding={"secret": "SECwrong"}, feishu={"secret": "wrong"},
                                    wecom={"key": "not-the-key"}))
    for name, vendor in (("ding", "dingtalk"), ("wecom", "wecom"), ("feishu", "feishu")):
        with pytest.raises(DeliveryError) as err:
            bad[name].send(msg(2))
        assert not err.value.retry and len(receivers.refused[vendor]) == 1, name
    assert "310000" in receivers.refused["dingtalk"][0]
    assert "19021" in receivers.refused["feishu"][0]
    # secrets: not in what the API lists, not in an error, not in the log
    listed = str([c.public() for c in good.values()])
    for secret in (DING_SECRET, FEISHU_SECRET, WECOM_KEY, "ding-access-token", "feishu-hook"):
        assert secret not in listed and secret not in caplog.text


def test_config_errors_name_the_key_and_secrets_come_from_the_environment(monkeypatch,
                                                                          receivers):
    with pytest.raises(ConfigError, match="notify.channels.x.type"):
        channels({"x": {"type": "pager"}})
    with pytest.raises(ConfigError, match="only sent over TLS"):
        channels({"m": {"type": "email", "host": "h", "from": "a@b", "to": ["c@d"],
                        "security": "none", "username": "u", "password": "p"}})
    monkeypatch.setenv("GOVSOC_NOTIFY_CHANNELS_DING_SECRET", DING_SECRET)
    conf = receivers.config()
    del conf["ding"]["secret"]
    channels(conf)["ding"].send(msg(3))  # signed with the secret from the environment
    assert len(receivers.received["dingtalk"]) == 1


def test_mail_over_starttls_with_login(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    box = MailBox(tmp_path)
    try:
        ch = channels({"mail": box.channel_config()})["mail"]
        ch.send(msg(4, "critical"))
        assert len(box.messages) == 1
        env = box.messages[0]
        assert env.rcpt_tos == ["duty@example.gov.cn"]
        text = env.content.decode()
        assert "Message-ID: <alert.a4@govsoc>" in text and "alert id: a4" in text
        wrong = channels({"mail": box.channel_config(password=box.PASSWORD + "x")})["mail"]
        with pytest.raises(DeliveryError) as err:
            wrong.send(msg(5))
        assert not err.value.retry and len(box.messages) == 1
        # a server whose certificate is not trusted is not sent the password
        untrusted = channels({"mail": box.channel_config(ca_file="")})["mail"]
        with pytest.raises(DeliveryError):
            untrusted.send(msg(6))
        assert MailBox.PASSWORD not in caplog.text and MailBox.PASSWORD not in str(ch.public())
    finally:
        box.close()


def test_rate_limit_holds_messages_back_until_a_token_is_there(tmp_path, receivers):
    now = [0.0]
    bucket = TokenBucket(rate=1.0, burst=2, clock=lambda: now[0])
    assert bucket.take() and bucket.take() and not bucket.take()
    assert bucket.wait_time() == pytest.approx(1.0)
    now[0] = 1.0
    assert bucket.take() and not bucket.take()
    # the sender: two messages go at once (the burst), the third waits for the bucket
    ch = channels(receivers.config())["wecom"]
    outbox = Outbox(tmp_path / "outbox.db")
    for i in range(3):
        outbox.enqueue(msg(i), [ch])
    d = Dispatcher(outbox, [ch])
    bucket = TokenBucket(rate=1.0, burst=2, clock=lambda: now[0])
    assert d.step(ch, bucket) == (0.0, False) and d.step(ch, bucket) == (0.0, False)
    wait, paused = d.step(ch, bucket)
    assert paused and wait == pytest.approx(1.0)
    assert len(receivers.received["wecom"]) == 2
    assert [r["state"] for r in outbox.deliveries("wecom")].count("pending") == 1
    now[0] += 1.0
    assert d.step(ch, bucket) == (0.0, False) and len(receivers.received["wecom"]) == 3
    outbox.close()


def test_down_channel_is_retried_and_blocks_nothing_and_a_restart_loses_and_doubles_nothing(
        tmp_path, receivers):
    chans = channels(receivers.config())
    fast = Backoff(base=0.05, cap=0.2)
    outbox = Outbox(tmp_path / "outbox.db")
    receivers.down.add("feishu")
    d = Dispatcher(outbox, chans.values(), backoff=fast, poll=0.05).start()
    for i in range(3):
        assert outbox.enqueue(msg(i), chans.values())
    assert not outbox.enqueue(msg(0), chans.values())  # the same news again: nothing added
    wait_for(lambda: len(receivers.received["dingtalk"]) == 3 and
             len(receivers.received["wecom"]) == 3, "the healthy channels")
    wait_for(lambda: any(r["attempts"] >= 2 for r in outbox.deliveries("feishu")),
             "retries of the channel that is down")
    assert all(r["state"] in ("pending", "sending") for r in outbox.deliveries("feishu"))
    assert "HTTP 503" in outbox.stats("feishu")["last_error"]
    # restart while feishu is still down: nothing queued is lost
    d.close()
    outbox.close()
    outbox = Outbox(tmp_path / "outbox.db")
    assert not outbox.enqueue(msg(1), chans.values())
    # a sender that died between claiming and recording leaves a lease that runs out
    crashed = outbox.claim("feishu", lease_s=0.0)
    assert crashed is not None
    receivers.down.clear()
    d = Dispatcher(outbox, chans.values(), backoff=fast, poll=0.05).start()
    try:
        wait_for(lambda: all(r["state"] == "sent" for r in outbox.deliveries()), "all sent")
    finally:
        d.close()
        outbox.close()
    texts = [r["content"]["text"] for r in receivers.received["feishu"]]
    assert sorted(t.split("alert id: ")[1] for t in texts) == ["a0", "a1", "a2"]
    assert len(receivers.received["dingtalk"]) == 3 and len(receivers.received["wecom"]) == 3


def test_a_failing_channel_gives_up_after_max_attempts(tmp_path, receivers):
    chans = channels(receivers.config(wecom={"max_attempts": 2}))
    outbox = Outbox(tmp_path / "outbox.db")
    receivers.down.add("wecom")
    d = Dispatcher(outbox, [chans["wecom"]], backoff=Backoff(0.02, 0.05), poll=0.05).start()
    try:
        outbox.enqueue(msg(9), [chans["wecom"]])
        wait_for(lambda: outbox.deliveries("wecom")[0]["state"] == "failed", "giving up")
    finally:
        d.close()
        outbox.close()


def _alert(aid: str, level: str, ts: str) -> dict:
    return {"@timestamp": ts, "message": f"alert {aid}",
            "event": {"kind": "alert", "id": aid, "dataset": "govsoc.alert"},
            "rule": {"id": "r1", "name": f"rule for {aid}"},
            "threat": {"tactic": {"name": ["Credential Access"]}},
            "organization": {"id": "wjw"},
            "govsoc": {"alert": {"status": "open", "level": level, "count": 1,
                                 "first_seen": ts}}}


def _run(run_id: str, status: str, ts: str) -> dict:
    """A run status document (`playbook_runs`), as the driver writes it."""
    return {"@timestamp": ts, "message": f"playbook patch {status}",
            "event": {"kind": "state", "id": f"run-{run_id}", "dataset": "govsoc.playbook_run"},
            "govsoc": {"playbook": {"run_id": run_id, "playbook": "patch", "status": status,
                                    "summary": {"h1": {"status": "ok"}}}}}


def _request(run_id: str, status: str, ts: str) -> dict:
    """A run request (`state` family), as the API's approval flow writes it."""
    return {"@timestamp": ts, "event": {"kind": "state", "id": f"runreq:{run_id}",
                                        "dataset": "govsoc.state.run_request"},
            "govsoc": {"departments": ["wjw"], "run_request": {
                "run_id": run_id, "playbook": "block_ip", "status": status,
                "needs_approval": True, "requester": "alice", "hosts": ["h1"]}}}


def test_watcher_queues_new_alerts_at_level_and_run_news_once(tmp_path, store, receivers):
    chans = channels(receivers.config(), min_level="high")
    outbox = Outbox(tmp_path / "outbox.db")
    watcher = Watcher(store, outbox, list(chans.values()))
    now = ecs.now_iso()
    store.write([_alert("old1", "critical", now), _run("r0", "successful", now)], refresh=True)
    assert watcher.pass_once() == 0  # the first pass only records what was there
    store.write([_alert("new-high", "high", now), _alert("new-low", "low", now),
                 _alert("new-crit", "critical", now), _request("r1", "pending", now),
                 _run("r2", "failed", now), _run("r3", "running", now)], refresh=True)
    assert watcher.pass_once() == 4
    assert watcher.pass_once() == 0  # read again: nothing new
    ids = {r["message_id"] for r in outbox.deliveries("ding")}
    assert ids == {"alert:new-high", "alert:new-crit", "run:r1:approval", "run:r2:failed"}
    # the request approved and run: its result is one message, whichever document says it
    store.write([_request("r1", "successful", now), _run("r1", "successful", now)],
                refresh=True)
    assert watcher.pass_once() == 1
    assert "run:r1:successful" in {r["message_id"] for r in outbox.deliveries("ding")}
    outbox.close()


def test_the_govsoc_up_service_sends_a_new_alert(tmp_path, monkeypatch, receivers):
    """The `notify` service as `govsoc up` runs it: config from govsoc.toml, the first pass
    only records, an alert raised afterwards reaches the channel."""
    from importlib.metadata import entry_points

    from soc_core.store import open_store

    run = next(ep for ep in entry_points(group="govsoc.services") if ep.name == "notify").load()
    chans = receivers.config()
    lines = ["[notify]", "interval = 0.05", f'outbox = "{tmp_path}/outbox.db"',
             "[notify.channels.ding]"]
    lines += [f'{k} = "{v}"' for k, v in chans["ding"].items()]
    (tmp_path / "govsoc.toml").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("GOVSOC_CONFIG", str(tmp_path / "govsoc.toml"))
    url = f"sqlite:///{tmp_path}/govsoc.db"
    store = open_store(url)
    store.write([_alert("before", "critical", ecs.now_iso())], refresh=True)
    stop = threading.Event()
    t = threading.Thread(target=run, args=(url, stop, False), daemon=True)
    t.start()
    try:
        outbox = Outbox(tmp_path / "outbox.db")
        wait_for(lambda: outbox.mark("baseline") == "done", "the first pass")
        outbox.close()
        store.write([_alert("after", "critical", ecs.now_iso())], refresh=True)
        wait_for(lambda: len(receivers.received["dingtalk"]) == 1, "the new alert")
    finally:
        stop.set()
        t.join(15)
        store.close()
    assert "alert id: after" in receivers.received["dingtalk"][0]["markdown"]["text"]


def test_outbox_opened_by_several_at_once_makes_its_tables_once(tmp_path):
    """The service and a sender opening one new outbox at the same moment: each gets a
    working queue (a racing schema change once failed the second with "duplicate column")."""
    for round_ in range(10):
        path = tmp_path / f"outbox{round_}.db"
        start, opened, errors = threading.Barrier(6), [], []

        def open_it(path=path, start=start, opened=opened, errors=errors) -> None:
            start.wait()
            try:
                opened.append(Outbox(path))
            except Exception as exc:  # noqa: BLE001 - the failure this test looks for
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert opened[0].enqueue(Message(id=f"m{round_}", kind="alert", level="high",
                                         title="t", text="x"), [])
        assert not opened[-1].enqueue(Message(id=f"m{round_}", kind="alert", level="high",
                                              title="t", text="x"), [])
        for box in opened:
            box.close()
