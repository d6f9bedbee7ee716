"""Signed reports end to end: a compliance report rendered to PDF reads back in Chinese,
makes pages, embeds its CJK fonts, and its detached SM2 signature verifies with the OpenSSL
3 command line and with `govsoc report verify`; one changed byte fails both."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from cloud_inventory import DISTID, make_report, verify_file
from cloud_inventory.report_cli import report
from crypto_svc import Keystore
from soc_core.config import Config
from soc_core.store import open_store

MASTER = "reports-test-master-secret-0123456789"


def seed(store, n: int = 6) -> None:
    docs = []
    for i in range(n):
        listening = [{"protocol": "tcp", "address": "0.0.0.0", "port": 22, "process": "sshd"}]
        if i == 2:
            listening.append({"protocol": "tcp", "address": "0.0.0.0", "port": 23,
                              "process": "inetd"})
        docs.append({"@timestamp": "2026-11-30T02:00:00Z",
                     "event": {"kind": "asset", "dataset": "assets", "id": f"asset-{i}"},
                     "host": {"name": f"web-{i}", "ip": [f"10.1.0.{i + 10}"],
                              "os": {"full": "Debian GNU/Linux 12 (bookworm)"}},
                     "organization": {"id": "wjw", "name": "市卫健委"},
                     "govsoc": {"asset": {"run_id": "r1", "listening": listening,
                                          "packages": [{"name": "openssh-server",
                                                        "version": "1:9.2"}],
                                          "time_sync": {"running": True},
                                          "last_patch": "2026-11-20T00:00:00"}}})
    docs.append({"@timestamp": "2026-11-29T02:00:00Z",
                 "event": {"dataset": "govsoc.dr_drill", "kind": "event", "id": "drill-1",
                           "action": "dr_drill", "outcome": "success"},
                 "govsoc": {"dr": {"run_id": "d1", "primary": "web-0", "standby": "web-1",
                                   "encrypted": True, "verified": True, "rpo_s": 12.5,
                                   "rto_s": 4.2}}})
    res = store.write(docs, refresh=True)
    assert not res.rejected


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    d = tmp_path_factory.mktemp("reports")
    cfg = Config(values={"store_url": f"sqlite:///{d}/govsoc.db", "data_dir": str(d),
                         "retention_days": 180, "timezone": "Asia/Shanghai"})
    keystore = Keystore(d / "keystore.json", MASTER.encode(), iterations=1000)
    with open_store(cfg.store_url) as store:
        seed(store)
        pdf = make_report("compliance", store, cfg, fmt="pdf", keystore=keystore)
        html = make_report("dr", store, cfg, fmt="html", lang="en", keystore=keystore)
    return {"pdf": pdf, "html": html, "keystore": keystore, "dir": d}


def openssl_verify(path: Path, sig: Path, pub: Path) -> list[subprocess.CompletedProcess]:
    """The two OpenSSL 3 command lines the README gives auditors."""
    return [subprocess.run(cmd, capture_output=True, text=True, timeout=60) for cmd in (
        ["openssl", "dgst", "-sm3", "-sigopt", f"distid:{DISTID}", "-verify", str(pub),
         "-signature", str(sig), str(path)],
        ["openssl", "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pkeyopt",
         f"distid:{DISTID}", "-pubin", "-inkey", str(pub), "-in", str(path),
         "-sigfile", str(sig)])]


def test_pdf_reads_back_in_chinese_with_pages_and_embedded_cjk_fonts(made, tmp_path):
    pdf = made["pdf"].path
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    for heading in ("等保 2.0 与密评合规自评估", "等保 2.0 第三级", "商用密码应用安全性评估",
                    "安全管理中心", "远程管理仅通过加密通道", "签名与验证"):
        assert heading in text, heading
    # the telnet host fails its control, and the report says which host
    assert "web-2" in text and "telnet" in text
    subprocess.run(["pdftoppm", "-r", "30", "-png", str(pdf), str(tmp_path / "page")],
                   check=True, capture_output=True)
    assert len(list(tmp_path.glob("page-*.png"))) >= 2
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True,
                           check=True).stdout.splitlines()[2:]
    cjk = [f for f in fonts if "CJK" in f]
    assert cjk and all(" yes " in f for f in cjk), fonts  # embedded (emb = yes)


def test_signature_verifies_with_openssl_and_govsoc_and_one_byte_breaks_both(made, tmp_path,
                                                                              monkeypatch):
    for m in (made["pdf"], made["html"]):
        assert m.public_key.name == "platform-sm2.pub.pem"
        for out in openssl_verify(m.path, m.signature, m.public_key):
            assert out.returncode == 0, out.stderr
        res = verify_file(m.path, m.signature, keystore=made["keystore"])
        assert res.ok and res.key_id == m.key_id and res.fingerprint == m.fingerprint
    monkeypatch.setenv("GOVSOC_DATA_DIR", str(made["dir"]))
    monkeypatch.delenv("GOVSOC_CONFIG", raising=False)
    runner = CliRunner()
    m = made["pdf"]
    ok = runner.invoke(report, ["verify", str(m.path), str(m.signature)])
    assert ok.exit_code == 0 and m.key_id in ok.output, ok.output
    # one changed byte in a copy: OpenSSL and both govsoc paths refuse it
    data = bytearray(m.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad = tmp_path / m.path.name
    bad.write_bytes(bytes(data))
    for out in openssl_verify(bad, m.signature, m.public_key):
        assert out.returncode != 0
    assert not verify_file(bad, m.signature, keystore=made["keystore"]).ok
    refused = runner.invoke(report, ["verify", str(bad), str(m.signature)])
    assert refused.exit_code == 1 and "FAILED" in refused.output
    by_key = runner.invoke(report, ["verify", str(bad), str(m.signature), "--pubkey",
                                    str(m.public_key)])
    assert by_key.exit_code == 1
    missing = runner.invoke(report, ["verify", str(bad), str(tmp_path / "none.sig")])
    assert missing.exit_code == 2 and "cannot read" in missing.output


def test_english_html_report_shows_drill_figures(made):
    html = made["html"].path.read_text(encoding="utf-8")
    assert 'lang="en"' in html and "Disaster-recovery drills" in html
    assert "<svg" in html and "4.2" in html and "12.5" in html


def test_every_kind_renders_and_is_listed(made):
    from cloud_inventory import REPORT_KINDS, list_reports

    cfg = Config(values={"store_url": f"sqlite:///{made['dir']}/govsoc.db",
                         "data_dir": str(made["dir"]), "timezone": "Asia/Shanghai"})
    with open_store(cfg.store_url) as store:
        names = {k: make_report(k, store, cfg, fmt="html", keystore=made["keystore"]).name
                 for k in REPORT_KINDS}
        listed = {r["name"] for r in list_reports(store)}
    assert set(names.values()) <= listed and made["pdf"].name in listed
    exposure = (made["dir"] / "reports" / names["exposure"]).read_text(encoding="utf-8")
    assert "明文管理协议" in exposure and "web-2" in exposure  # the telnet host
    idle = (made["dir"] / "reports" / names["idle"]).read_text(encoding="utf-8")
    assert "各部门云资源利用率" in idle and "无监测数据" in idle  # no metrics: never "idle"


def test_the_reports_service_makes_what_is_due_and_mails_it_signed(tmp_path, monkeypatch):
    """`govsoc up`'s reports service makes the scheduled report and queues it for its
    recipients; the notify dispatcher delivers it over SMTP (STARTTLS, login) to the test
    mail server with the document, its signature and the public key attached, and the
    signature of the mailed bytes verifies."""
    import email
    import email.policy
    import threading
    import time

    from notify_helpers import MailBox, wait_for

    from cloud_inventory.reports.schedule import ScheduleError, entries, run
    from soc_core.config import load_config
    from soc_core.notify import Dispatcher, Outbox, channels_from_config, outbox_path

    box = MailBox(tmp_path)
    mail = box.channel_config()
    (tmp_path / "govsoc.toml").write_text(
        f'store_url = "sqlite:///{tmp_path}/govsoc.db"\ndata_dir = "{tmp_path}"\n'
        '[crypto]\nkdf_iterations = 1000\n'
        '[[reports.schedule]]\nkind = "dr"\ncron = "* * * * *"\nformat = "html"\n'
        'mail_to = ["cio@example.gov.cn", "audit@example.gov.cn"]\n'
        '[notify.channels.mail]\n' + "".join(
            f"{k} = {v!r}\n".replace("'", '"') if not isinstance(v, list) else
            f'{k} = ["{v[0]}"]\n' for k, v in mail.items() if k != "password"))
    monkeypatch.setenv("GOVSOC_NOTIFY_CHANNELS_MAIL_PASSWORD", mail["password"])
    monkeypatch.setenv("GOVSOC_CONFIG", str(tmp_path / "govsoc.toml"))
    monkeypatch.setenv("GOVSOC_MASTER_KEY", MASTER)
    for var in ("GOVSOC_DATA_DIR", "GOVSOC_STORE_URL", "GOVSOC_MASTER_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    cfg = load_config()
    assert entries(cfg)[0].mail_to == ("cio@example.gov.cn", "audit@example.gov.cn")
    bad = load_config()
    bad.values["reports"]["schedule"][0]["mail_to"] = ["not an address"]
    with pytest.raises(ScheduleError, match="mail_to: not an e-mail address"):
        entries(bad)
    outbox = Outbox(outbox_path(cfg))
    sender = Dispatcher(outbox, channels_from_config(cfg).values(), poll=0.05).start()
    stop = threading.Event()
    service = threading.Thread(target=run, args=(f"sqlite:///{tmp_path}/govsoc.db", stop))
    service.start()
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "reports").glob("dr-*.html.sig")):
            assert time.monotonic() < deadline, "no scheduled report"
            time.sleep(0.2)
        wait_for(lambda: box.messages, "the report mail", timeout=60)
    finally:
        stop.set()
        service.join(30)
        sender.close()
        outbox.close()
        box.close()
    report_file = next((tmp_path / "reports").glob("dr-*.html"))
    sig_file = report_file.with_name(report_file.name + ".sig")
    assert verify_file(report_file, sig_file,
                       keystore=Keystore(tmp_path / "keystore.json", None)).ok
    env = box.messages[0]
    assert sorted(env.rcpt_tos) == ["audit@example.gov.cn", "cio@example.gov.cn"]
    got = email.message_from_bytes(env.content, policy=email.policy.default)
    assert report_file.name in got["Subject"] and "openssl dgst -sm3" in \
        got.get_body(("plain",)).get_content()
    # the attachments as a mail client saves them: the bytes signed, exactly
    files = {a.get_filename(): a.get_payload(decode=True) for a in got.iter_attachments()}
    pem = next(n for n in files if n.endswith(".pem"))
    assert sorted(files) == sorted([report_file.name, sig_file.name, pem])
    assert files[report_file.name] == report_file.read_bytes()
    mailed = tmp_path / "mailed"
    mailed.mkdir()
    for name, data in files.items():
        (mailed / name).write_bytes(data)
    pem = next(n for n in files if n.endswith(".pem"))
    assert verify_file(mailed / report_file.name, mailed / sig_file.name,
                       public_pem=(mailed / pem).read_bytes()).ok


REGISTER_DEPTS = [("wjw", "市卫健委"), ("gaj", "市公安局"), (None, None)]


def register_assets(n: int = 70) -> list[dict]:
    """Two departments and a few assets with none; 市卫健委's level-3 high group runs over a
    page; the assets with no department have no 等保 level or importance either."""
    docs = []
    for i in range(n):
        dept_id, dept = REGISTER_DEPTS[0 if i < 50 else 1 if i < 66 else 2]
        ips = [f"10.{i % 3 + 1}.7.{i}"] + ([f"10.9.{k}.{i}" for k in range(4)] if i == 5
                                           else [])
        ports = [22] + [443, 8080, 3306][: i % 4]
        asset = {"run_id": "r1", "listening": [{"protocol": "tcp", "address": "0.0.0.0",
                                                "port": p} for p in ports]}
        if dept_id:
            top = i < 45 or i % 2
            asset.update(importance="high" if top else "low", djcp_level=3 if top else 2)
        doc = {"@timestamp": "2026-11-30T02:00:00Z",
               "event": {"kind": "asset", "dataset": "assets", "id": f"reg-{i}"},
               "host": {"name": f"app-{i:03d}", "ip": ips,
                        "os": {"name": "Kylin" if i % 2 else "Debian GNU/Linux",
                               "version": "V10" if i % 2 else "12"}},
               "govsoc": {"asset": asset}}
        if dept_id:
            doc["organization"] = {"id": dept_id, "name": dept}
        docs.append(doc)
    return docs


def test_asset_register_pdf_lists_every_asset_by_department_and_level(made, tmp_path,
                                                                      monkeypatch):
    """The register as an auditor gets it: every asset once, each in one row with its
    addresses, OS and ports, under its department's and its 等保 level / importance's
    headings; those named atop each page their rows run onto; signed and verifiable."""
    d = tmp_path
    cfg = Config(values={"store_url": f"sqlite:///{d}/govsoc.db", "data_dir": str(d),
                         "timezone": "Asia/Shanghai"})
    docs = register_assets()
    with open_store(cfg.store_url) as store:
        assert not store.write(docs, refresh=True).rejected
        m = make_report("assets", store, cfg, fmt="pdf", keystore=made["keystore"])
        # a register cut at the row limit says so, and how to get the rest
        from cloud_inventory.reports import kinds

        monkeypatch.setattr(kinds, "MAX_ROWS", 10)
        cut = kinds.build("assets", store, cfg)
    register = next(s for s in cut.sections if s.heading == "资产清单")
    assert register.text == ["显示 10 项，共 70 项；完整清单：govsoc inventory list"]
    assert sum(len(s.table.rows) for s in cut.sections if s.table) == 10
    for out in openssl_verify(m.path, m.signature, m.public_key):
        assert out.returncode == 0, out.stderr
    pages = subprocess.run(["pdftotext", "-layout", "-enc", "UTF-8", str(m.path), "-"],
                           capture_output=True, text=True, check=True).stdout.split("\f")
    text = "\f".join(pages)
    for heading in ("资产登记表", "资产清单", "名称 (地址)", "操作系统", "监听端口", "签名与验证"):
        assert heading in text, heading
    # departments in the chart's order (largest first), the assets with none last; in each,
    # higher 等保 levels and importance first
    groups = ["市卫健委 (50)", "等保3级 · 重要程度 高 (48)", "等保2级 · 重要程度 低 (2)",
              "市公安局 (16)", "等保3级 · 重要程度 高 (8)", "等保2级 · 重要程度 低 (8)",
              "未分配 (4)", "未定级 · 重要程度 未设置 (4)"]
    at, pos = [], 0
    for g in groups:
        pos = text.index(g, pos) + 1
        at.append(pos)
    rows = [ln for ln in text.splitlines() if ln.strip().startswith("app-")]
    assert len(rows) == len(docs)
    for i, doc in enumerate(docs):
        row = next(ln for ln in rows if ln.strip().startswith(f"app-{i:03d} ("))
        ports = ", ".join(str(p) for p in sorted([22] + [443, 8080, 3306][: i % 4]))
        os_name = "Kylin V10" if i % 2 else "Debian GNU/Linux 12"
        for want in [doc["host"]["ip"][0], os_name, ports]:
            assert want in row, (want, row)
        # under its own department's and level's headings: the nearest ones above the row
        row_at = text.index(row)
        dept, group = (max(ks, key=lambda j: at[j] if at[j] < row_at else -1)
                       for ks in ((0, 3, 6), (1, 2, 4, 5, 7)))
        a = doc["govsoc"]["asset"]
        assert groups[dept].startswith(doc.get("organization", {}).get("name", "未分配"))
        assert group == dept + 1 + (a.get("djcp_level") == 2), (row, groups[group])
    # the asset with five addresses: three shown, and how many more
    five = next(ln for ln in rows if "app-005 (" in ln)
    assert "(10.3.7.5, 10.9.0.5, 10.9.1.5 +2)" in " ".join(five.split())
    # 市卫健委's level-3 rows run over a page: that page is headed with both names
    second = next(p for p in pages if "app-044" in p)
    assert second.strip().startswith("市卫健委 (50) · 等保3级 · 重要程度 高 (48)"), second[:200]
