"""Real SMB2 traffic made by the test itself: impacket's SMB server in one network namespace
serves files of random bytes from a share, impacket's client in the other fetches them over
one SMB2 session, and dumpcap records the exchange on the client's end of the veth pair."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from loopback_http import wait_for_close, wait_started

from collectors.packet.vethpair import veth_pair

CLIENT_IP, SERVER_IP = "10.218.0.1", "10.218.0.2"
SHARE = "DATA"

# impacket's server answers SMB 2.0.2 to an SMB2 negotiate; anyone may log in (no
# credentials configured), and the session is neither signed nor encrypted, so Wireshark
# sees the READ responses' data
SERVER = r"""
import sys
from impacket import smbserver
ip, root = sys.argv[1], sys.argv[2]
server = smbserver.SimpleSMBServer(listenAddress=ip, listenPort=445)
server.setSMB2Support(True)
server.addShare("DATA", root, "govsoc test share")
print("ready", flush=True)  # the constructor has bound the port
server.start()
"""

CLIENT = r"""
import hashlib, io, sys
from impacket.smb3structs import SMB2_DIALECT_002
from impacket.smbconnection import SMBConnection
ip, *names = sys.argv[1:]
conn = SMBConnection(ip, ip, sess_port=445, preferredDialect=SMB2_DIALECT_002, timeout=20)
conn.login("analyst", "smb-test")
for name in names:
    buf = io.BytesIO()
    conn.getFile("DATA", name, buf.write)
    print(name, hashlib.sha256(buf.getvalue()).hexdigest(), flush=True)
conn.close()  # logs off
"""


@dataclass
class SmbServed:
    pcap: Path
    files: dict[str, bytes]  # name on the share -> the bytes served


def capture_smb(folder: Path, files: dict[str, int]) -> SmbServed:
    """Fetch each of `files` (name -> size, random bytes) over one SMB2 session between two
    namespaces of a veth pair made for this call; the capture is `folder/smb.pcapng`."""
    share = folder / "share"
    share.mkdir(parents=True, exist_ok=True)
    served = {name: os.urandom(size) for name, size in files.items()}
    for name, body in served.items():
        (share / name).write_bytes(body)
    pcap = folder / "smb.pcapng"
    with veth_pair("gm", (CLIENT_IP, SERVER_IP)) as (ns_a, ns_b, va, _vb):
        server = subprocess.Popen(["ip", "netns", "exec", ns_b, sys.executable, "-c", SERVER,
                                   SERVER_IP, str(share)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        dump = subprocess.Popen(["ip", "netns", "exec", ns_a, "dumpcap", "-q", "-i", va,
                                 "-f", "tcp port 445", "-w", str(pcap)],
                                stderr=subprocess.PIPE, text=True)
        try:
            line = server.stdout.readline().strip() if server.stdout else ""
            assert line == "ready", f"the SMB server did not start: {server.stderr.read()}"
            wait_started(dump, pcap)
            got = subprocess.run(["ip", "netns", "exec", ns_a, sys.executable, "-c", CLIENT,
                                  SERVER_IP, *served], capture_output=True, text=True,
                                 timeout=60)
            assert got.returncode == 0, got.stderr[-2000:]
            fetched = dict(ln.split() for ln in got.stdout.splitlines())
            assert fetched == {n: hashlib.sha256(b).hexdigest() for n, b in served.items()}
            wait_for_close(pcap, "the SMB session")
        finally:
            dump.send_signal(signal.SIGINT)
            dump.wait(10)
            server.kill()
            server.wait(10)
    return SmbServed(pcap=pcap, files=served)
