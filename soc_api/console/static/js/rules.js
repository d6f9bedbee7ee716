/* A rule's changes (switch off/on, snooze, exceptions) through the API's /rules routes;
   the server refuses whoever lacks rules:write. The page reloads to show the new state. */
(function () {
  "use strict";
  const g = window.govsoc;
  const enc = encodeURIComponent;
  const val = (id) => document.getElementById(id).value.trim();

  async function act(fn) {
    try {
      await fn();
      window.location.assign(window.location.pathname);
    } catch (err) { g.toast(g.t("aq.failed") + (err.detail || err.message), true); }
  }

  function on(id, fn) {
    const form = document.getElementById(id);
    if (form) form.addEventListener("submit", (e) => { e.preventDefault(); act(() => fn(form)); });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const box = document.getElementById("rule");
    if (!box) return;
    const base = "/rules/" + enc(box.dataset.id);
    on("switch", (form) => g.api("POST", base + (form.dataset.on === "true" ? "/disable" : "/enable"),
      { reason: val("switch-reason") }));
    on("snooze", () => g.api("POST", base + "/snooze", {
      until: new Date(Date.now() + Number(val("snooze-hours")) * 3600e3).toISOString(),
      reason: val("snooze-reason") }));
    const un = document.getElementById("unsnooze");
    if (un) un.addEventListener("click", () => act(() => g.api("DELETE", base + "/snooze")));
    on("add-exception", () => g.api("POST", base + "/exceptions", {
      field: val("exc-field"), values: val("exc-values").split(/[,，]/).map((v) => v.trim()).filter(Boolean),
      reason: val("exc-reason") }));
    document.querySelectorAll(".remove-exc").forEach((b) => b.addEventListener("click", () => act(
      () => g.api("DELETE", base + "/exceptions/" + enc(b.closest("li").dataset.exc)))));
  });
})();
