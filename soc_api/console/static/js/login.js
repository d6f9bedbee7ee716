/* The login: password (+ TOTP), then what the server's stage asks for: a new password at
   the first login, or a second factor to enrol for an administrator. */
(function () {
  "use strict";
  const g = window.govsoc;
  const $ = (id) => document.getElementById(id);
  let csrf = "";

  function say(key, bad, extra) {
    const el = $("login-message");
    el.textContent = g.t(key) + (extra ? " " + extra : "");
    el.className = bad ? "message bad" : "message";
  }

  function show(form) {
    for (const id of ["login-form", "change-form", "enrol-form"]) $(id).hidden = id !== form;
    const first = $(form).querySelector("input");
    if (first) first.focus();
  }

  async function call(url, body) {
    const r = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": csrf },
      body: JSON.stringify(body || {}),
    });
    let data = {};
    try { data = await r.json(); } catch (e) { data = {}; }
    return { ok: r.ok, status: r.status, data };
  }

  document.addEventListener("DOMContentLoaded", () => {
    const next = $("login-card").dataset.next || "/";
    $("username").focus();

    $("login-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const body = { username: $("username").value, password: $("password").value };
      if ($("totp").value) body.totp = $("totp").value.trim();
      const r = await call("/auth/login", body);
      if (!r.ok) {
        const detail = r.data.detail || "";
        if (r.status === 429) say("login.rate", true);
        else if (detail.startsWith("account locked")) say("login.locked", true);
        else if (detail === "TOTP code required") { say("login.totp_required", true); $("totp").focus(); }
        else say("login.failed", true);
        return;
      }
      csrf = r.data.csrf_token;
      if (r.data.stage === "full") { window.location.assign(next); return; }
      if (r.data.stage === "password") {
        $("current").value = $("password").value;
        say("login.change_title", false);
        show("change-form");
        return;
      }
      const en = await call("/auth/totp/enroll");
      if (!en.ok) { say("login.error", true, en.data.detail); return; }
      $("enrol-secret").textContent = en.data.secret;
      $("enrol-uri").textContent = en.data.otpauth_uri;
      say("login.enrol_title", false);
      show("enrol-form");
    });

    $("change-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      if ($("new").value !== $("new2").value) { say("login.mismatch", true); return; }
      const r = await call("/auth/password", { current: $("current").value, new: $("new").value });
      if (!r.ok) { say("login.error", true, r.data.detail); return; }
      $("password").value = "";
      say("login.changed", false);
      show("login-form");
    });

    $("enrol-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const r = await call("/auth/totp/confirm", { code: $("enrol-code").value.trim() });
      if (!r.ok) { say("login.error", true, r.data.detail); return; }
      $("password").value = "";
      say("login.enrolled", false);
      show("login-form");
    });
  });
})();
