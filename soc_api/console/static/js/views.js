/* The alert queue's saved views: open one (its filters are the page's address), save the
   filters shown now under a name (optionally shared, optionally the default), make one the
   default, delete one's own, through the API's /views routes. */
(function () {
  "use strict";
  const g = window.govsoc;

  document.addEventListener("DOMContentLoaded", () => {
    const box = document.getElementById("views");
    if (!box) return;
    const pick = document.getElementById("view-pick");
    const chosen = () => pick.options[pick.selectedIndex];
    const failed = (e) => g.toast(g.t("aq.failed") + (e.detail || e.message), true);
    pick.addEventListener("change", () => {
      const o = chosen();
      window.location.assign(o.value ? o.dataset.url : "/ui/alerts?status=open");
    });
    document.getElementById("view-default").addEventListener("click", () => {
      g.api("PUT", "/views/default", { id: pick.value || null })
        .then(() => window.location.reload(), failed);
    });
    document.getElementById("view-delete").addEventListener("click", () => {
      const o = chosen();
      if (!o.value || o.dataset.own !== "true") { g.toast(g.t("vw.pick_own"), true); return; }
      g.api("DELETE", "/views/" + encodeURIComponent(o.value))
        .then(() => window.location.reload(), failed);
    });
    document.getElementById("view-save").addEventListener("submit", (e) => {
      e.preventDefault();
      g.api("POST", "/views", {
        name: document.getElementById("view-name").value.trim(),
        filters: JSON.parse(box.dataset.filters),
        shared: document.getElementById("view-shared").checked,
        default: document.getElementById("view-as-default").checked,
      }).then(() => { g.toast(g.t("vw.saved")); window.location.reload(); }, failed);
    });
  });
})();
