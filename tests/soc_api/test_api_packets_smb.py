"""SMB carving (issue 18 point 4) on real SMB2 traffic the test makes: impacket's SMB server
in a network namespace serves two files of random bytes, a client in the other namespace of
the veth pair fetches both over one SMB2 session, dumpcap records it; the capture goes into
the packet ring as `govsoc collect pcap --ring` puts it, and the session's flow is carved,
listed and downloaded through the API, on both stores."""

from __future__ import annotations

import hashlib
import subprocess

import pytest
from api_helpers import Api, close_context_keep_store, make_config
from fastapi.testclient import TestClient
from packets_ring import first, replay, ring_settings
from smb_transfer import capture_smb

from collectors.packet import carve, carved_path
from soc_api.app import build_context, create_app
from soc_core.sm3 import sm3_hex

pytestmark = pytest.mark.live

DEPTS = [{"id": "sjj", "name": "市审计局", "cidrs": ["10.218.0.0/24"]}]
# a file read in several SMB2 READs (the server's largest is 64 KiB) and a small one
FILES = {"payload.bin": 200_000, "minutes.docx": 30_000}


@pytest.fixture(scope="module")
def smb(tmp_path_factory):
    return capture_smb(tmp_path_factory.mktemp("smb"), FILES)


def tshark_count(path, display_filter: str) -> int:
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-Y", display_filter, "-T",
                          "fields", "-e", "frame.number"], capture_output=True, text=True,
                         check=True).stdout
    return len(out.split())


def test_smb2_files_are_carved_hashed_recorded_and_downloaded(smb, store, tmp_path,
                                                              monkeypatch):
    # SMB2 all the way (no SMB1 on the wire), each file read in one or more READs
    assert tshark_count(smb.pcap, "smb") == 0
    assert tshark_count(smb.pcap, "smb2.cmd == 8 && smb2.flags.response == 1") >= 5
    monkeypatch.setenv("GOVSOC_MASTER_KEY", "packets-test-master-secret-" + "p" * 12)
    cfg = make_config(tmp_path, store.url, departments=DEPTS, **ring_settings(tmp_path))
    ctx = build_context(cfg, store=store)
    store.use_departments(ctx.departments)
    try:
        flow = first(replay(cfg, store, smb.pcap), "network.flow", destination__port=445)
        api = Api(TestClient(create_app(cfg, context=ctx), base_url="https://testserver"),
                  ctx, cfg)
        analyst = api.token("analyst", departments=["sjj"])
        r = api.client.post(f"/packets/flows/{flow['event']['id']}/carve", headers=analyst)
        assert r.status_code == 200, r.text
        got = {f["file"]["name"]: f for f in r.json()["files"]}
        assert sorted(got) == sorted(FILES) and not r.json()["notes"]
        assert r.json()["new"] == len(FILES)
        for name, body in smb.files.items():
            ev = got[name]
            sha = ev["file"]["hash"]["sha256"]
            assert sha == hashlib.sha256(body).hexdigest()
            assert ev["govsoc"]["file"]["hash"]["sm3"] == sm3_hex(body)
            assert ev["file"]["size"] == len(body)
            assert ev["network"]["protocol"] == "smb"
            assert ev["event"]["dataset"] == "file.carved"
            assert ev["govsoc"]["carve"]["origin"] == flow["event"]["id"]
            assert ev["destination"] == {"ip": "10.218.0.2", "port": 445}
            assert carved_path(cfg.data_dir, sha).read_bytes() == body
            stored = store.get("events", ev["event"]["id"])
            assert stored["file"]["hash"]["sha256"] == sha
            assert stored["network"]["protocol"] == "smb"
        assert got["minutes.docx"]["file"]["extension"] == "docx"
        # carving again records nothing new
        again = api.client.post(f"/packets/flows/{flow['event']['id']}/carve",
                                headers=analyst).json()
        assert again["new"] == 0
        store.refresh()
        listed = api.client.get("/packets/files", params={"origin": flow["event"]["id"]},
                                headers=analyst).json()["items"]
        assert sorted(i["file"]["name"] for i in listed) == sorted(FILES)
        # the bytes go to a responder of the department, as an attachment
        sha = got["payload.bin"]["file"]["hash"]["sha256"]
        assert api.client.get(f"/packets/files/{sha}", headers=analyst).status_code == 403
        dl = api.client.get(f"/packets/files/{sha}",
                            headers=api.token("responder", departments=["sjj"]))
        assert dl.status_code == 200
        assert dl.headers["content-type"] == "application/octet-stream"
        assert dl.content == smb.files["payload.bin"]
        assert "files.download" in [d["event"]["action"] for d in api.ctx.trail.recent]
    finally:
        close_context_keep_store(ctx)


def test_a_read_missing_from_the_capture_makes_a_partial_file_with_a_note(smb, tmp_path):
    """tshark exports an SMB2 file with a lost READ at full size, the gap filled with
    whatever was in its memory: the carved file is marked partial, with a note."""
    reads = subprocess.run(["tshark", "-n", "-r", str(smb.pcap), "-Y",
                            "smb2.cmd == 8 && smb2.flags.response == 1", "-T", "fields",
                            "-e", "frame.number", "-e", "tcp.segment"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    frame, _, segments = reads[1].partition("\t")  # payload.bin's second 64 KiB
    lost = tmp_path / "lost.pcapng"
    subprocess.run(["editcap", str(smb.pcap), str(lost), *(segments.split(",") if segments
                                                          else [frame])],
                   capture_output=True, check=True)
    got = carve(lost, tmp_path / "data")
    files = {f["file"]["name"]: f for f in got.files}
    assert files["payload.bin"]["govsoc"]["carve"]["partial"] is True
    assert files["payload.bin"]["file"]["hash"]["sha256"] != hashlib.sha256(
        smb.files["payload.bin"]).hexdigest()
    assert got.notes == [f"payload.bin: 65536 of {FILES['payload.bin']} bytes are not in the "
                         "capture: the carved file is partial and its hashes are not the "
                         "transferred file's"]
    docx = files["minutes.docx"]  # the other file of the session is whole
    assert "partial" not in docx["govsoc"]["carve"]
    assert docx["file"]["hash"]["sha256"] == hashlib.sha256(smb.files["minutes.docx"]).hexdigest()
