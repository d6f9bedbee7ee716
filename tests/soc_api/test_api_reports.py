"""Reports through the API: an auditor lists a signed report and downloads it, its
signature and the public key, and the downloaded bytes verify with OpenSSL; roles without
compliance:read and principals limited to some departments are refused."""

from __future__ import annotations

import subprocess

from cloud_inventory import DISTID, make_report


def test_auditor_lists_and_downloads_a_signed_report(api_sqlite, tmp_path):
    api = api_sqlite
    made = make_report("weekly", api.ctx.store, api.cfg, fmt="pdf")
    auditor = api.token("auditor")
    listed = api.client.get("/reports", headers=auditor)
    assert listed.status_code == 200
    entry = next(r for r in listed.json()["reports"] if r["name"] == made.name)
    assert entry["kind"] == "weekly" and entry["sm3"] == made.sm3 and "folder" not in entry
    files = {}
    for suffix, part in (("", "report.pdf"), ("/signature", "report.pdf.sig"),
                         ("/public-key", "platform.pem")):
        r = api.client.get(f"/reports/{made.name}{suffix}", headers=auditor)
        assert r.status_code == 200, r.text
        files[part] = tmp_path / part
        files[part].write_bytes(r.content)
    assert files["report.pdf"].read_bytes()[:5] == b"%PDF-"
    out = subprocess.run(["openssl", "dgst", "-sm3", "-sigopt", f"distid:{DISTID}", "-verify",
                          str(files["platform.pem"]), "-signature", str(files["report.pdf.sig"]),
                          str(files["report.pdf"])], capture_output=True, text=True)
    assert out.returncode == 0 and "Verified OK" in out.stdout, out.stderr
    assert api.client.get("/reports/weekly-20990101T000000Z.zh-CN.pdf",
                          headers=auditor).status_code == 404
    assert api.client.get("/reports/..%2Fkeystore.json", headers=auditor).status_code == 404
    assert api.client.get("/reports", headers=api.token("analyst")).status_code == 403
    limited = api.token("auditor", departments=("wjw",))
    r = api.client.get(f"/reports/{made.name}", headers=limited)
    assert r.status_code == 403 and r.json()["detail"]
    checked = api.client.get("/compliance?standard=mp", headers=auditor)
    assert checked.status_code == 200
    assert {c["standard"] for c in checked.json()["controls"]} == {"mp"}
    assert api.client.get("/compliance?standard=x", headers=auditor).status_code == 422
