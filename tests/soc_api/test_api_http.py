"""Over real HTTPS: the service started as `govsoc up` starts it (uvicorn in a thread,
self-signed certificate made on first start), every route but health answering 401
without credentials; and the command line's user and serve checks."""

from __future__ import annotations

import gc
import re
import socket
import ssl
import subprocess
import sys
import threading
import time

import httpx
import pytest
from api_helpers import PARAMS, STRONG, app_routes, make_config

from soc_api import roles
from soc_api.app import build_context, create_app
from soc_api.serve import Listen, serve_in_thread


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path, sqlite_store):
    cfg = make_config(tmp_path, sqlite_store.url)
    ctx = build_context(cfg, store=sqlite_store)
    app = create_app(cfg, context=ctx)
    listen = Listen("127.0.0.1", free_port(), 1, False)
    stop = threading.Event()
    t = threading.Thread(target=serve_in_thread, args=(cfg, listen, stop, app), daemon=True)
    t.start()
    cert = tmp_path / "data" / "api" / "tls-cert.pem"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", listen.port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield listen.url, str(cert), app, ctx
    stop.set()
    t.join(10)
    ctx.trail.close()


def test_every_route_needs_credentials_over_https(served):
    url, cert, app, ctx = served
    assert url.startswith("https://")
    with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=cert)) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").status_code == 200
        for method, path in app_routes(type("C", (), {"app": app})()):
            if roles.ROUTES[(method, path)] == roles.PUBLIC:
                continue
            r = c.request(method, re.sub(r"\{(\w+)\}", lambda m: PARAMS[m.group(1)], path))
            assert r.status_code == 401, (method, path, r.status_code)
        assert c.get("/openapi.json").status_code == 401
        # a login over HTTPS sets a Secure cookie the client sends back
        ctx.identity.add_user("http.user", roles_=["viewer"])
        otp_user = ctx.identity.user("http.user")
        assert otp_user.must_change
    with httpx.Client(base_url=url, verify=False) as c:  # noqa: S501 - self-signed, pinned above
        r = c.get("/healthz")
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "server" not in r.headers


def test_startup_heap_is_kept_out_of_the_cyclic_gc_while_serving(api_sqlite):
    """A running app keeps what startup built out of the cyclic GC (a full collection
    then scans what requests left, not the whole heap) and gives it back at shutdown."""
    with api_sqlite.client as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > 10_000
    assert gc.get_freeze_count() == 0


def test_plain_http_only_on_loopback_and_by_name(tmp_path):
    env = {"GOVSOC_STORE_URL": f"sqlite:///{tmp_path}/g.db", "GOVSOC_DATA_DIR": str(tmp_path),
           "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "soc_core.cli", "api", "serve", "--host",
                        "0.0.0.0", "--insecure-http"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "only on loopback" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_user_and_token_lifecycle(tmp_path, api_sqlite):
    env = {"GOVSOC_STORE_URL": api_sqlite.ctx.store.url, "GOVSOC_DATA_DIR": str(tmp_path / "data"),
           "PATH": "/usr/bin:/bin", "GOVSOC_MASTER_KEY": "x" * 32}

    def govsoc(*args):
        return subprocess.run([sys.executable, "-m", "soc_core.cli", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    r = govsoc("user", "add", "first.admin", "--role", "sysadmin")
    assert r.returncode == 0, r.stderr
    otp = r.stdout.strip().rsplit(" ", 1)[1]
    assert govsoc("user", "add", "first.admin").returncode == 2
    bad = govsoc("user", "add", "second.admin", "--role", "root")
    assert bad.returncode == 2 and "unknown role" in bad.stderr
    lst = govsoc("user", "list")
    assert "first.admin" in lst.stdout and otp not in lst.stdout
    api_sqlite.ctx.identity._cache.clear()
    r = api_sqlite.client.post("/auth/login", json={"username": "first.admin", "password": otp})
    assert r.status_code == 200 and r.json()["stage"] == "password"
    assert govsoc("user", "disable", "first.admin").returncode == 0
    api_sqlite.ctx.identity._cache.clear()
    assert api_sqlite.client.get("/auth/me").status_code == 401
    t = govsoc("token", "create", "--label", "ca-system", "--role", "service")
    assert t.returncode == 0, t.stderr
    secret = t.stdout.strip().splitlines()[-1]
    tid = t.stdout.split()[1]
    h = {"Authorization": f"Bearer {secret}"}
    assert api_sqlite.client.get("/auth/me", headers=h).json()["name"] == "ca-system"
    assert govsoc("token", "revoke", tid).returncode == 0
    api_sqlite.ctx.identity._cache.clear()
    assert api_sqlite.client.get("/auth/me", headers=h).status_code == 401
    assert secret not in govsoc("token", "list").stdout
    assert STRONG  # the shared strong password stays out of the CLI entirely


def test_govsoc_up_serves_the_api(tmp_path, monkeypatch, capsys):
    """The `govsoc up` service entry point: it prints its URL and answers there."""
    from soc_api import service

    port = free_port()
    monkeypatch.setenv("GOVSOC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GOVSOC_API_PORT", str(port))
    monkeypatch.setenv("GOVSOC_API_HOST", "127.0.0.1")
    monkeypatch.setenv("GOVSOC_API_INSECURE_HTTP", "1")
    monkeypatch.setenv("GOVSOC_CONFIG", str(tmp_path / "govsoc.toml"))
    (tmp_path / "govsoc.toml").write_text("[api]\nport = 1\nhost = 'x'\ninsecure_http = false\n")
    stop = threading.Event()
    t = threading.Thread(target=service.run, args=(f"sqlite:///{tmp_path}/g.db", stop, False),
                         daemon=True)
    t.start()
    try:
        for _ in range(100):
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert r.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/events").status_code == 401
    finally:
        stop.set()
        t.join(15)
    assert not t.is_alive()
    assert f"govsoc API: http://127.0.0.1:{port}" in capsys.readouterr().out
