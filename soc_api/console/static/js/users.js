/* Users and tokens: disable/enable a user, revoke a token, through the API's routes. */
(function () {
  "use strict";
  const g = window.govsoc;
  const enc = encodeURIComponent;

  async function act(fn) {
    try {
      await fn();
      window.location.assign(window.location.pathname);
    } catch (err) { g.toast(g.t("aq.failed") + (err.detail || err.message), true); }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll(".user-toggle").forEach((b) => b.addEventListener("click", () =>
      act(() => g.api("POST", `/users/${enc(b.dataset.name)}/${b.dataset.to}`))));
    document.querySelectorAll(".token-revoke").forEach((b) => b.addEventListener("click", () =>
      act(() => g.api("DELETE", `/tokens/${enc(b.dataset.id)}`))));
  });
})();
