/* The case pages' actions: each form calls the API's /cases routes with the session's
   CSRF token, then shows the case as the server now has it (a reload: the page is the
   server's rendering, so the timeline and the deadlines stay the server's). */
(function () {
  "use strict";
  const g = window.govsoc;
  const enc = encodeURIComponent;
  const val = (id) => document.getElementById(id).value.trim();
  const list = (s) => s.split(/[\s,，]+/).filter(Boolean);

  function on(id, fn) {
    const form = document.getElementById(id);
    if (!form) return;
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        const next = await fn();
        window.location.assign(typeof next === "string" ? next : window.location.pathname);
      } catch (err) { g.toast(g.t("aq.failed") + (err.detail || err.message), true); }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    on("new-case", async () => {
      const body = { title: val("new-title") };
      const ids = list(val("new-alerts"));
      if (ids.length) body.alerts = ids;
      const made = await g.api("POST", "/cases", body);
      return "/ui/cases/" + enc(made.id);
    });
    const box = document.getElementById("case");
    if (!box) return;
    const base = "/cases/" + enc(box.dataset.id);
    on("classify", () => g.api("PATCH", base, {
      category: val("c-category") || null, level: val("c-level") || null }));
    on("reported", () => {
      const at = val("rp-at");  // the browser's local time; empty: now
      const report = { to: val("rp-to"), how: val("rp-how") };
      if (at) report.at = new Date(at).toISOString();
      if (val("rp-ref")) report.ref = val("rp-ref");
      return g.api("PATCH", base, { reported: report });
    });
    on("add-task", () => g.api("POST", base + "/tasks", { title: val("task-title") }));
    on("add-observable", () => g.api("POST", base + "/observables", {
      type: val("obs-type"), value: val("obs-value") }));
    on("merge", () => g.api("POST", base + "/merge", { from: list(val("merge-from")) }));
    on("close-case", () => g.api("POST", base + "/close", { resolution: val("resolution") }));
    document.querySelectorAll(".task-done").forEach((c) => c.addEventListener("change", async () => {
      const id = c.closest("li").dataset.task;
      try {
        await g.api("PATCH", base + "/tasks/" + enc(id), { status: c.checked ? "done" : "open" });
        window.location.assign(window.location.pathname);
      } catch (err) { g.toast(g.t("aq.failed") + (err.detail || err.message), true); }
    }));
  });
})();
