"""Receivers the notification tests start on loopback: one HTTP server that checks each
robot webhook as its vendor does (DingTalk and Feishu signatures, WeCom's key) and answers
with the vendor's own success or error body, and an `aiosmtpd` mail server with STARTTLS
and login."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import secrets
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DING_TOKEN, DING_SECRET = "ding-access-token-0123456789", "SECding+secret/with=chars"
WECOM_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
FEISHU_TOKEN, FEISHU_SECRET = "feishu-hook-token-0123456789abcdef", "feishu-secret-value"
WINDOW_S = 3600  # both vendors refuse a timestamp more than an hour off


def _b64_hmac(key: bytes, msg: bytes) -> str:
    return base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()


class Receivers:
    """`received[vendor]`: bodies accepted; `refused[vendor]`: why a request was refused.
    `down`: vendors answering 503 now."""

    def __init__(self) -> None:
        self.received: dict[str, list[dict]] = {"dingtalk": [], "wecom": [], "feishu": []}
        self.refused: dict[str, list[str]] = {"dingtalk": [], "wecom": [], "feishu": []}
        self.down: set[str] = set()
        self.lock = threading.Lock()
        receivers = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                parts = urlsplit(self.path)
                vendor = parts.path.strip("/").split("/")[0]
                if vendor in receivers.down:
                    return self._answer(503, {"error": "unavailable"})
                check = getattr(receivers, f"check_{vendor}", None)
                if check is None:
                    return self._answer(404, {"error": "not found"})
                doc = orjson.loads(body)
                ok, answer = check(parts, doc)
                with receivers.lock:
                    (receivers.received[vendor].append(doc) if ok
                     else receivers.refused[vendor].append(str(answer)))
                return self._answer(200, answer)

            def _answer(self, status: int, doc: dict) -> None:
                data = orjson.dumps(doc)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the vendors' checks -------------------------------------------------------
    @staticmethod
    def check_dingtalk(parts, doc) -> tuple[bool, dict]:
        qs = parse_qs(parts.query)  # decodes the URL-encoding the sender had to apply
        if qs.get("access_token") != [DING_TOKEN]:
            return False, {"errcode": 300001, "errmsg": "token is not exist"}
        ts, sign = qs.get("timestamp", [""])[0], qs.get("sign", [""])[0]
        expected = _b64_hmac(DING_SECRET.encode(), f"{ts}\n{DING_SECRET}".encode())
        if not ts.isdigit() or abs(time.time() * 1000 - int(ts)) > WINDOW_S * 1000 \
                or not hmac.compare_digest(sign, expected):
            return False, {"errcode": 310000, "errmsg": "sign not match"}
        if doc.get("msgtype") != "markdown" or not doc["markdown"].get("text"):
            return False, {"errcode": 40035, "errmsg": "缺少参数 json"}
        return True, {"errcode": 0, "errmsg": "ok"}

    @staticmethod
    def check_wecom(parts, doc) -> tuple[bool, dict]:
        if parse_qs(parts.query).get("key") != [WECOM_KEY]:
            return False, {"errcode": 93000, "errmsg": "invalid webhook url"}
        content = (doc.get("markdown") or {}).get("content", "")
        if doc.get("msgtype") != "markdown" or not content or len(content.encode()) > 4096:
            return False, {"errcode": 40058, "errmsg": "markdown.content exceed max length"}
        return True, {"errcode": 0, "errmsg": "ok"}

    @staticmethod
    def check_feishu(parts, doc) -> tuple[bool, dict]:
        if parts.path.rstrip("/").split("/")[-1] != FEISHU_TOKEN:
            return False, {"code": 19001, "msg": "param invalid: incoming webhook access "
                                                 "token invalid"}
        ts, sign = str(doc.get("timestamp", "")), str(doc.get("sign", ""))
        expected = _b64_hmac(f"{ts}\n{FEISHU_SECRET}".encode(), b"")
        if not ts.isdigit() or abs(time.time() - int(ts)) > WINDOW_S \
                or not hmac.compare_digest(sign, expected):
            return False, {"code": 19021, "msg": "sign match fail or timestamp is not "
                                                 "within one hour from current time"}
        if doc.get("msg_type") != "text" or not doc["content"].get("text"):
            return False, {"code": 9499, "msg": "Bad Request"}
        return True, {"code": 0, "msg": "success", "data": {}}

    # -- channel configuration pointing here -----------------------------------------
    def config(self, **overrides) -> dict:
        chans = {
            "ding": {"type": "dingtalk", "secret": DING_SECRET,
                     "url": f"{self.base}/dingtalk/robot/send?access_token={DING_TOKEN}"},
            "wecom": {"type": "wecom", "url": f"{self.base}/wecom/cgi-bin/webhook/send",
                      "key": WECOM_KEY},
            "feishu": {"type": "feishu", "secret": FEISHU_SECRET,
                       "url": f"{self.base}/feishu/open-apis/bot/v2/hook/{FEISHU_TOKEN}"},
        }
        for name, extra in overrides.items():
            chans[name] = {**chans.get(name, {}), **extra}
        return chans


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key): the mail server's, and the CA the
    channel is told to trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "govsoc test smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "smtp.crt", tmp / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class MailBox:
    """aiosmtpd with STARTTLS required and login required (over TLS only)."""

    USER, PASSWORD = "soc-mailer", secrets.token_urlsafe(16)  # made per run

    def __init__(self, tmp: Path) -> None:
        self.messages: list = []
        self.cert, key = self_signed(tmp)
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(self.cert, key)
        box = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802
                box.messages.append(envelope)
                return "250 Message accepted for delivery"

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (auth_data.login == box.USER.encode()
                  and auth_data.password == box.PASSWORD.encode())
            return AuthResult(success=ok, handled=False)  # False: the server answers 535

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                     tls_context=tls, require_starttls=True,
                                     auth_required=True, auth_require_tls=True,
                                     authenticator=authenticator,
                                     auth_exclude_mechanism=["LOGIN"])
        self.controller.start()

    def channel_config(self, **extra) -> dict:
        return {"type": "email", "host": "127.0.0.1", "port": self.port,
                "security": "starttls", "username": self.USER, "password": self.PASSWORD,
                "from": "soc@example.gov.cn", "to": ["duty@example.gov.cn"],
                "ca_file": str(self.cert), **extra}

    def close(self) -> None:
        self.controller.stop()


def wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    """Poll until `predicate()` holds (a deadline for a hung test, never a timing claim)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)
