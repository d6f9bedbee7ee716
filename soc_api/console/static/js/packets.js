/* The alert page's packets view (its fragments are htmx's): carving calls the packets API
   with the session's CSRF token, then reloads the carved-files fragment. */
(function () {
  "use strict";
  const g = window.govsoc;
  document.addEventListener("click", async (ev) => {
    const btn = ev.target.closest ? ev.target.closest("#carve-files") : null;
    if (!btn) return;
    btn.disabled = true;
    try {
      const r = await g.api("POST", btn.dataset.url);
      g.toast(g.t("pk.carved", { n: r.files.length }));
      if (window.htmx) {
        window.htmx.ajax("GET", btn.dataset.files, { target: "#carved-files", swap: "innerHTML" });
      }
    } catch (e) {
      g.toast(g.t("pk.failed") + (e.detail || e.message), true);
    } finally {
      btn.disabled = false;
    }
  });
})();
