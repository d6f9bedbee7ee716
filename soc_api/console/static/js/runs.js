/* Playbook runs: the request form, approve/reject (the API refuses whoever may not), and
   a run's live output over Server-Sent Events from the API's /runs/{id}/events. */
(function () {
  "use strict";
  const g = window.govsoc;
  const enc = encodeURIComponent;
  const failed = (e) => g.toast(g.t("aq.failed") + (e.detail || e.message), true);

  function request(form) {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const body = {
        playbook: document.getElementById("r-playbook").value,
        hosts: document.getElementById("r-hosts").value.split(/[\s,，]+/).filter(Boolean),
        check: document.getElementById("r-check").checked,
      };
      const raw = document.getElementById("r-vars").value.trim();
      try {
        if (raw) body.vars = JSON.parse(raw);
      } catch (err) { g.toast(g.t("rn.bad_vars"), true); return; }
      try {
        const rec = await g.api("POST", "/runs", body);
        window.location.assign("/ui/runs/" + enc(rec.run_id));
      } catch (err) { failed(err); }
    });
  }

  function decisions() {
    document.querySelectorAll("button.approve, button.reject").forEach((b) => {
      b.addEventListener("click", async () => {
        const id = b.dataset.id;
        try {
          if (b.classList.contains("approve")) {
            await g.api("POST", `/runs/${enc(id)}/approve`);
          } else {
            const reason = window.prompt(g.t("rn.reject_reason"));
            if (!reason) return;
            await g.api("POST", `/runs/${enc(id)}/reject`, { reason });
          }
          g.toast(g.t("aq.done"));
          window.location.assign(window.location.pathname + window.location.search);
        } catch (err) { failed(err); }
      });
    });
  }

  const local = g.local;

  function follow(box) {
    const out = document.getElementById("output");
    const state = document.getElementById("stream-state");
    const status = document.getElementById("run-status");
    const src = new EventSource(`/runs/${enc(box.dataset.id)}/events`);
    src.addEventListener("open", () => { state.textContent = g.t("rn.live"); });
    // approved (or started) while the page is open: it says so before the first output
    src.addEventListener("status", (e) => {
      const d = JSON.parse(e.data);
      status.dataset.status = d.status;
      status.textContent = g.t("rs." + d.status);
      const approver = document.getElementById("run-approver");
      if (approver && d.approver) approver.textContent = d.approver + " · " + local(d.decided, box.dataset.zone);
      const actions = document.getElementById("decide");
      if (actions && d.status !== "pending") actions.remove();
    });
    src.addEventListener("runner", (e) => {
      const d = JSON.parse(e.data);
      const li = document.createElement("li");
      li.className = "ev-" + (d.outcome || "unknown");
      const parts = [local(d["@timestamp"], box.dataset.zone), d.host || "", d.task || d.event || "", d.message || ""];
      li.textContent = parts.filter(Boolean).join(" · ");
      out.appendChild(li);
    });
    src.addEventListener("result", (e) => {
      src.close(); // the run has ended: no reconnect
      const d = JSON.parse(e.data);
      status.dataset.status = d.status;
      status.textContent = g.t("rs." + d.status);
      const approver = document.getElementById("run-approver");
      if (approver && d.approver) approver.textContent = d.approver + " · " + local(d.decided, box.dataset.zone);
      state.textContent = g.t("rn.ended");
      const actions = document.getElementById("decide");
      if (actions) actions.remove();
      summary((d.result && d.result.summary) || {});
      const undo = document.getElementById("undo-box");
      if (undo && (d.status === "successful" || d.status === "failed")) undo.hidden = false;
    });
  }

  // the per-host summary of the run's `result` event, as the server renders an ended run's
  function summary(hosts) {
    const body = document.querySelector("#summary tbody");
    body.replaceChildren();
    Object.keys(hosts).sort().forEach((host) => {
      const s = hosts[host];
      const tr = document.createElement("tr");
      tr.dataset.host = host;
      tr.dataset.status = s.status;
      [host, s.status, s.ok, s.changed, s.failed, s.unreachable, s.error || ""].forEach((v) => {
        const td = document.createElement("td");
        td.textContent = String(v);
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  // undo asks the API for the opposite run (it waits for approval like any change)
  function undo() {
    const b = document.querySelector("button.undo");
    if (!b) return;
    b.addEventListener("click", async () => {
      try {
        const rec = await g.api("POST", `/runs/${enc(b.dataset.id)}/undo`);
        window.location.assign("/ui/runs/" + enc(rec.run_id));
      } catch (err) { failed(err); }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("request-run");
    if (form) request(form);
    decisions();
    undo();
    const box = document.getElementById("run");
    if (box) follow(box);
  });
})();
