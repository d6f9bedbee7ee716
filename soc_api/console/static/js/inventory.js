/* The inventory pages' actions: annotate an asset (PATCH /assets/{id}: only the fields
   changed are sent) and request the retirement of a zombie (POST /idle/{id}/retire: a run
   that waits for a secadmin's approval on the runs page). */
(function () {
  "use strict";
  const g = window.govsoc;
  const enc = encodeURIComponent;
  const failed = (err) => g.toast(g.t("aq.failed") + (err.detail || err.message), true);
  const list = (s) => s.split(/[\s,，]+/).filter(Boolean);

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("annotate");
    if (form) {
      const id = document.getElementById("asset").dataset.id;
      const field = (el) => document.getElementById(el);
      const start = {};
      for (const el of ["an-dept", "an-importance", "an-level", "an-class", "an-tags", "an-note"]) {
        start[el] = field(el).value;
      }
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        const body = {};
        const changed = (el) => field(el).value !== start[el];
        if (changed("an-dept") && field("an-dept").value) body.department = field("an-dept").value;
        if (changed("an-importance") && field("an-importance").value) body.importance = field("an-importance").value;
        if (changed("an-level") && field("an-level").value) body.djcp_level = Number(field("an-level").value);
        if (changed("an-class") && field("an-class").value) body.data_class = field("an-class").value;
        if (changed("an-tags")) body.tags = list(field("an-tags").value);
        if (changed("an-note")) body.note = field("an-note").value.trim();
        if (!Object.keys(body).length) { g.toast(g.t("as.nothing")); return; }
        g.api("PATCH", "/assets/" + enc(id), body)
          .then(() => window.location.assign(window.location.pathname), failed);
      });
    }
    document.querySelectorAll("form.retire").forEach((f) => f.addEventListener("submit", (e) => {
      e.preventDefault();
      const services = list(f.querySelector(".retire-services").value);
      g.api("POST", "/idle/" + enc(f.dataset.asset) + "/retire", { services })
        .then((run) => window.location.assign("/ui/runs/" + enc(run.run_id)), failed);
    }));
  });
})();
