"""Identity over the API: first login with a one-time password, the password policy,
TOTP for administrators, lockout, sessions (cookie flags, CSRF, logout, idle timeout),
tokens (scope, expiry, revocation, rate), and bad input answered in one line."""

from __future__ import annotations

import time

from api_helpers import STRONG, b64

from soc_api import totp


def test_first_login_must_change_the_one_time_password(api_sqlite):
    api = api_sqlite
    otp = api.ctx.identity.add_user("zhang.san", roles_=["analyst"], departments=["*"])
    r = api.client.post("/auth/login", json={"username": "zhang.san", "password": otp})
    assert r.status_code == 200 and r.json()["stage"] == "password"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie
    csrf = {"X-CSRF-Token": r.json()["csrf_token"]}
    # nothing but the password change is allowed yet
    assert api.client.get("/events").status_code == 403
    weak = api.client.post("/auth/password", headers=csrf,
                           json={"current": otp, "new": "short"})
    assert weak.status_code == 400 and "at least" in weak.json()["detail"]
    classes = api.client.post("/auth/password", headers=csrf,
                              json={"current": otp, "new": "alllowercaseletters"})
    assert classes.status_code == 400
    ok = api.client.post("/auth/password", headers=csrf, json={"current": otp, "new": STRONG})
    assert ok.status_code == 200
    # the session ended with the change; the new password works, the old one does not
    assert api.client.get("/auth/me").status_code == 401
    assert api.client.post("/auth/login", json={"username": "zhang.san", "password": otp}
                           ).status_code == 401
    api.login("zhang.san")
    assert api.client.get("/events").status_code == 200
    # the history refuses the last passwords again
    csrf = api.login("zhang.san")
    again = api.client.post("/auth/password", headers=csrf,
                            json={"current": STRONG, "new": STRONG})
    assert again.status_code == 400 and "differ" in again.json()["detail"]


def test_administrators_need_a_second_factor(api_sqlite):
    api = api_sqlite
    otp = api.ctx.identity.add_user("li.si", roles_=["sysadmin"])
    api.ctx.identity.change_password("li.si", otp, STRONG)
    r = api.client.post("/auth/login", json={"username": "li.si", "password": STRONG})
    assert r.json()["stage"] == "totp"
    csrf = {"X-CSRF-Token": r.json()["csrf_token"]}
    assert api.client.get("/users", headers=csrf).status_code == 403
    enrol = api.client.post("/auth/totp/enroll", headers=csrf).json()
    assert enrol["otpauth_uri"].startswith("otpauth://totp/govsoc:li.si?secret=")
    bad = api.client.post("/auth/totp/confirm", headers=csrf, json={"code": "000000"})
    assert bad.status_code == 400
    code = totp.code_at(enrol["secret"], totp.now_step())
    assert api.client.post("/auth/totp/confirm", headers=csrf,
                           json={"code": code}).status_code == 200
    # now a code is required, and a used one is refused
    r = api.client.post("/auth/login", json={"username": "li.si", "password": STRONG})
    assert r.status_code == 401 and "TOTP code required" in r.json()["detail"]
    r = api.client.post("/auth/login", json={"username": "li.si", "password": STRONG,
                                             "totp": code})
    assert r.status_code == 401
    api.login("li.si", enrol["secret"])
    assert api.client.get("/users").status_code == 200


def test_lockout_after_repeated_failures(api_sqlite):
    api = api_sqlite
    api.user("wang.wu", "analyst")
    for _ in range(5):
        r = api.client.post("/auth/login", json={"username": "wang.wu", "password": "nope"})
        assert r.status_code == 401
    r = api.client.post("/auth/login", json={"username": "wang.wu", "password": STRONG})
    assert r.status_code == 401 and "locked" in r.json()["detail"]
    # an administrator's enable lifts it
    api.ctx.identity.set_disabled("wang.wu", False)
    api.login("wang.wu")
    failures = [d for d in api.ctx.trail.recent if d["event"]["action"] == "auth.login"
                and d["event"]["outcome"] == "failure"]
    assert len(failures) >= 6
    assert all("nope" not in str(d) and STRONG not in str(d) for d in api.ctx.trail.recent)


def test_unknown_users_and_wrong_passwords_read_alike(api_sqlite):
    api = api_sqlite
    api.user("zhao.liu", "viewer")
    a = api.client.post("/auth/login", json={"username": "nobody", "password": "x"})
    b = api.client.post("/auth/login", json={"username": "zhao.liu", "password": "x"})
    assert a.status_code == b.status_code == 401
    assert "invalid user name" in a.json()["detail"]
    assert "invalid user name" in b.json()["detail"]


def test_csrf_and_logout(api_sqlite):
    api = api_sqlite
    secret = api.user("sec.admin", "secadmin")
    api.user("target", "viewer")
    csrf = api.login("sec.admin", secret)
    grant = {"roles": ["analyst"], "departments": ["wjw"]}
    assert api.client.put("/users/target/grants", json=grant).status_code == 403
    assert api.client.put("/users/target/grants", json=grant,
                          headers={"X-CSRF-Token": "forged"}).status_code == 403
    r = api.client.put("/users/target/grants", json=grant, headers=csrf)
    assert r.status_code == 200 and r.json()["roles"] == ["analyst"]
    assert api.client.post("/auth/logout", headers=csrf).status_code == 200
    assert api.client.get("/auth/me").status_code == 401


def test_idle_session_expires(api_sqlite):
    api = api_sqlite
    api.user("idle.user", "viewer")
    api.login("idle.user")
    assert api.client.get("/auth/me").status_code == 200
    api.ctx.identity.idle = 0  # the configured idle time has passed
    time.sleep(1.1)
    api.ctx.identity._cache.clear()
    assert api.client.get("/auth/me").status_code == 401


def test_token_scope_expiry_and_revocation(api_sqlite):
    api = api_sqlite
    svc = api.ctx.crypto_service()
    k1 = svc.create_key("sign").id
    k2 = svc.create_key("sign").id
    tok, secret = api.ctx.identity.create_token("billing", roles_=["service"], keys=[k1],
                                                created_by="test")
    h = {"Authorization": f"Bearer {secret}"}
    ok = api.client.post("/crypto/sign", headers=h, json={"key_id": k1, "data": b64(b"x")})
    assert ok.status_code == 200
    other = api.client.post("/crypto/sign", headers=h, json={"key_id": k2, "data": b64(b"x")})
    assert other.status_code == 404  # another key is unknown to it, not forbidden
    listed = api.client.get("/crypto/keys", headers=h).json()["keys"]
    assert [k["id"] for k in listed] == [k1]
    assert api.client.get("/events", headers=h).status_code == 403
    # the principal of a verified secret is kept: another secret with the same id is not
    wrong = "gst_" + tok.id + "_" + ("B" if secret[-1] != "B" else "C") * 43
    assert api.client.get("/crypto/keys", headers={"Authorization": f"Bearer {wrong}"}
                          ).status_code == 401
    assert api.client.get("/crypto/keys", headers=h).status_code == 200
    api.ctx.identity.revoke_token(tok.id)
    assert api.client.post("/crypto/sign", headers=h,
                           json={"key_id": k1, "data": b64(b"x")}).status_code == 401
    # expiry
    tok2, secret2 = api.ctx.identity.create_token("short", roles_=["viewer"], days=1,
                                                  created_by="test")
    rec = api.ctx.identity._get("token:" + tok2.id)
    rec["expires"] = int(time.time()) - 1
    api.ctx.identity._put("govsoc.state.token", "token:" + tok2.id, rec)
    api.ctx.identity._cache.clear()
    assert api.client.get("/auth/me", headers={"Authorization": f"Bearer {secret2}"}
                          ).status_code == 401
    # a made-up token of the right shape
    fake = "gst_" + tok.id + "_" + "A" * 43
    assert api.client.get("/auth/me", headers={"Authorization": f"Bearer {fake}"}
                          ).status_code == 401


def test_token_rate_limit(api_sqlite):
    api = api_sqlite
    h = api.token("viewer", rate=5)
    codes = [api.client.get("/auth/me", headers=h).status_code for _ in range(12)]
    assert codes[:5] == [200] * 5 and 429 in codes


def test_sysadmin_mints_service_tokens_only(api_sqlite):
    api = api_sqlite
    h = api.token("sysadmin")
    r = api.client.post("/tokens", headers=h, json={"label": "x", "roles": ["analyst"]})
    assert r.status_code == 403
    r = api.client.post("/tokens", headers=h, json={"label": "signer", "roles": ["service"]})
    assert r.status_code == 201 and r.json()["token"].startswith("gst_")
    listed = api.client.get("/tokens", headers=h).json()["tokens"]
    assert all("token" not in t and "secret_sm3" not in t for t in listed)


def test_bad_input_is_one_line(api_sqlite):
    api = api_sqlite
    h = api.token("analyst")
    r = api.client.get("/events?size=100000", headers=h)
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    r = api.client.get("/events", params={"q": "(" * 300 + "a"}, headers=h)
    assert r.status_code == 400 and "\n" not in r.json()["detail"]
    r = api.client.get("/events", params={"from": "now-99999999999d"}, headers=h)
    assert r.status_code == 400
    r = api.client.get("/events", params={"cursor": "!!!"}, headers=h)
    assert r.status_code == 400
    big = api.client.post("/auth/login", content=b"x" * (17 << 20),
                          headers={"content-type": "application/json"})
    assert big.status_code == 413
    r = api.client.post("/auth/login", content=b"{not json",
                        headers={"content-type": "application/json"})
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    r = api.client.get("/users/..%2F..%2Fetc", headers=api.token("sysadmin"))
    assert r.status_code in (404, 422)


def test_expired_password_must_be_changed(api_sqlite):
    api = api_sqlite
    api.user("old.pass", "viewer")
    user = api.ctx.identity.user("old.pass")
    user.password_changed -= 91 * 86400  # the policy's 90 days have passed
    api.ctx.identity._save_user(user)
    r = api.client.post("/auth/login", json={"username": "old.pass", "password": STRONG})
    assert r.status_code == 200 and r.json()["stage"] == "password"
    assert api.client.get("/auth/me").json()["stage"] == "password"


def test_store_down_is_a_clear_503(api_sqlite):
    from soc_core.store import StoreUnavailable

    api = api_sqlite
    h = api.token("analyst")

    class Down:
        backend = "sqlite"

        def __getattr__(self, name):
            def fail(*a, **k):
                raise StoreUnavailable("store at sqlite:///x unreachable (test)")
            return fail

    api.ctx.identity._cache.clear()
    real, api.ctx.identity.store = api.ctx.identity.store, Down()
    try:
        r = api.client.get("/events", headers=h)
    finally:
        api.ctx.identity.store = real
    assert r.status_code == 503
    assert "unavailable" in r.json()["detail"] and "Traceback" not in r.text


def test_revocation_reaches_another_worker_within_the_cache_time(api_sqlite, monkeypatch):
    """A worker that did not revoke the token stops honouring it once its cached record
    is older than CACHE_SECONDS, also when it had verified the secret before."""
    from soc_api import identity as identity_mod

    monkeypatch.setattr(identity_mod, "CACHE_SECONDS", 0.2)
    api = api_sqlite
    other = identity_mod.Identity.from_config(api.ctx.cfg, api.ctx.store)  # another worker
    tok, secret = api.ctx.identity.create_token("elsewhere", roles_=["viewer"],
                                                created_by="test")
    assert other.token(secret) is not None and other.token(secret) is not None
    api.ctx.identity.revoke_token(tok.id)
    assert api.ctx.identity.token(secret) is None  # at once where it was revoked
    time.sleep(0.3)
    assert other.token(secret) is None



def _settled(identity):
    deadline = time.monotonic() + 5
    while identity._refreshing and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not identity._refreshing


def test_a_cached_token_is_refetched_ahead_in_the_background(api_sqlite, monkeypatch):
    """Past half its cache time a record is served from memory and refetched once in the
    background, so requests do not wait on the store; the refetched record (here: revoked
    by another worker) is what the next request sees."""
    from soc_api import identity as identity_mod

    monkeypatch.setattr(identity_mod, "CACHE_SECONDS", 1.0)
    api = api_sqlite
    other = identity_mod.Identity.from_config(api.ctx.cfg, api.ctx.store)  # another worker
    tok, secret = api.ctx.identity.create_token("ahead", roles_=["viewer"], created_by="test")
    assert other.token(secret) is not None
    api.ctx.identity.revoke_token(tok.id)
    time.sleep(0.6)
    assert other.token(secret) is not None  # still within the cache time: from memory
    _settled(other)
    assert other.token(secret) is None  # well within 1 s of the first read: refetched


def test_a_refetch_begun_before_a_revocation_is_not_kept(api_sqlite, monkeypatch):
    """A background refetch that read the record before this worker revoked it must not
    put the unrevoked record back: a revocation holds at once where it was made."""
    import threading

    from soc_api import identity as identity_mod

    monkeypatch.setattr(identity_mod, "CACHE_SECONDS", 1.0)
    api = api_sqlite
    read, release = threading.Event(), threading.Event()

    class Slow(identity_mod.Identity):
        def _get(self, doc_id):
            rec = super()._get(doc_id)
            if threading.current_thread().name.startswith("identity-refresh"):
                read.set()
                release.wait(5)
            return rec

    ident = Slow.from_config(api.ctx.cfg, api.ctx.store)
    tok, secret = ident.create_token("race", roles_=["viewer"], created_by="test")
    assert ident.token(secret) is not None
    time.sleep(0.6)
    assert ident.token(secret) is not None  # starts the refetch, which reads and waits
    assert read.wait(5)
    ident.revoke_token(tok.id)
    release.set()
    _settled(ident)
    assert ident.token(secret) is None
