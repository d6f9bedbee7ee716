/* Users and tokens: add a user and create a token (the one-time password or the token's
   secret shown once, with a copy button), disable/enable a user, revoke a token, through
   the API's routes. The secret is never stored by the page: it leaves with "done". */
(function () {
  "use strict";
  const g = window.govsoc;
  const enc = encodeURIComponent;
  const failed = (err) => g.toast(g.t("aq.failed") + (err.detail || err.message), true);

  async function act(fn) {
    try {
      await fn();
      window.location.assign(window.location.pathname);
    } catch (err) { failed(err); }
  }

  function showOnce(title, secret) {
    const box = document.getElementById("secret-box");
    document.getElementById("secret-title").textContent = title;
    const field = document.getElementById("secret");
    field.value = secret;
    box.hidden = false;
    field.focus();
    field.select();
  }

  const checked = (cls) => Array.from(document.querySelectorAll(cls + ":checked")).map((c) => c.value);

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll(".user-toggle").forEach((b) => b.addEventListener("click", () =>
      act(() => g.api("POST", `/users/${enc(b.dataset.name)}/${b.dataset.to}`))));
    document.querySelectorAll(".token-revoke").forEach((b) => b.addEventListener("click", () =>
      act(() => g.api("DELETE", `/tokens/${enc(b.dataset.id)}`))));
    const addUser = document.getElementById("add-user");
    if (addUser) addUser.addEventListener("submit", (e) => {
      e.preventDefault();
      const name = document.getElementById("nu-name").value.trim();
      g.api("POST", "/users", { name }).then((made) =>
        showOnce(g.t("us.otp_for", { name: made.name }), made.one_time_password), failed);
    });
    const newToken = document.getElementById("new-token");
    if (newToken) newToken.addEventListener("submit", (e) => {
      e.preventDefault();
      const days = document.getElementById("nt-days").value;
      const body = {
        label: document.getElementById("nt-label").value.trim(),
        roles: checked(".nt-role"), departments: checked(".nt-dept"),
        keys: document.getElementById("nt-keys").value.split(/[\s,，]+/).filter(Boolean),
      };
      if (days) body.days = Number(days);
      if (!body.roles.length) { g.toast(g.t("us.need_role"), true); return; }
      g.api("POST", "/tokens", body).then((made) =>
        showOnce(g.t("us.token_for", { id: made.id }), made.token), failed);
    });
    const copy = document.getElementById("secret-copy");
    if (copy) copy.addEventListener("click", async () => {
      const field = document.getElementById("secret");
      try {
        await navigator.clipboard.writeText(field.value);
      } catch (err) {  // no clipboard permission: the selected text, the old way
        field.select();
        document.execCommand("copy");
      }
      g.toast(g.t("us.copied"));
    });
    const done = document.getElementById("secret-done");
    if (done) done.addEventListener("click", () => {
      document.getElementById("secret").value = "";
      window.location.assign(window.location.pathname);
    });
  });
})();
