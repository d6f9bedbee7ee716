/* The alert queue (keyboard triage, bulk actions, new alerts without a reload) and the
   alert page's actions. Both call the API's alert routes with the session's CSRF token;
   the server decides what a role may do, the page only leaves out what it may not. */
(function () {
  "use strict";
  const g = window.govsoc;
  const enc = encodeURIComponent;

  async function transition(ids, status, reason, note) {
    const body = { status };
    if (reason) body.reason = reason;
    if (note) body.note = note;
    if (ids.length === 1) return g.api("POST", `/alerts/${enc(ids[0])}/transition`, body);
    return g.api("POST", "/alerts/bulk", Object.assign({ ids, action: "transition" }, body));
  }

  async function assign(ids, assignee) {
    if (ids.length === 1) return g.api("POST", `/alerts/${enc(ids[0])}/assign`, { assignee });
    return g.api("POST", "/alerts/bulk", { ids, action: "assign", assignee });
  }

  function failed(e) { g.toast(g.t("aq.failed") + (e.detail || e.message), true); }

  function queue(table) {
    const tbody = document.getElementById("rows");
    const filters = JSON.parse(table.dataset.filters);
    const mayWrite = table.dataset.mayWrite === "true";
    const rows = () => Array.from(tbody.querySelectorAll("tr[data-id]"));
    let cur = -1;
    // alerts that left this queue's filter (acknowledged, closed) while it is open: a poll
    // for new alerts sent before the change can answer after it, with the old status, and
    // must not put the row back as a new alert (it could then not be acknowledged again)
    const left = new Set();

    function go(i, focus = true) {
      const all = rows();
      if (!all.length) return;
      cur = Math.max(0, Math.min(all.length - 1, i));
      all.forEach((r, n) => r.classList.toggle("current", n === cur));
      if (focus) all[cur].focus();
    }
    const current = () => rows()[cur];
    const picked = () => rows().filter((r) => { const c = r.querySelector(".pick"); return c && c.checked; });
    const targets = () => { const p = picked(); return p.length ? p : (current() ? [current()] : []); };

    function updateBulk() {
      const bar = document.getElementById("bulk");
      if (!bar) return;
      const n = picked().length;
      bar.hidden = n === 0;
      document.getElementById("bulk-count").textContent = g.t("aq.bulk", { n });
    }

    function applied(trs, status) {
      for (const tr of trs) {
        if (filters.status && filters.status !== status) {
          left.add(tr.dataset.id);
          tr.remove();
        } else {
          tr.dataset.status = status;
          tr.querySelector(".status").textContent = g.t("status." + status);
          const c = tr.querySelector(".pick");
          if (c) c.checked = false;
        }
      }
      if (cur >= rows().length) cur = rows().length - 1;
      if (cur >= 0) go(cur);
      updateBulk();
      g.toast(g.t("aq.done"));
    }

    async function act(trs, status, reason, note) {
      if (!trs.length) return;
      try {
        await transition(trs.map((r) => r.dataset.id), status, reason, note);
        applied(trs, status);
      } catch (e) { failed(e); }
    }

    const dialog = document.getElementById("close-dialog");
    let closing = [];
    function askClose() {
      closing = targets();
      if (!closing.length || !dialog) return;
      document.getElementById("close-note").value = "";
      dialog.showModal();
    }
    if (dialog) {
      dialog.addEventListener("close", () => {
        if (dialog.returnValue === "ok") {
          act(closing, "closed", document.getElementById("close-reason").value,
              document.getElementById("close-note").value.trim());
        }
      });
      document.getElementById("bulk-ack").addEventListener("click", () => act(picked(), "acknowledged"));
      document.getElementById("bulk-close").addEventListener("click", askClose);
      const toCase = document.getElementById("bulk-case");
      if (toCase) toCase.addEventListener("click", () => window.location.assign(
        "/ui/cases?alerts=" + enc(picked().map((r) => r.dataset.id).join(","))));
      document.getElementById("select-all").addEventListener("change", (e) => {
        rows().forEach((r) => { r.querySelector(".pick").checked = e.target.checked; });
        updateBulk();
      });
    }
    tbody.addEventListener("change", (e) => { if (e.target.classList.contains("pick")) updateBulk(); });
    tbody.addEventListener("click", (e) => {
      const tr = e.target.closest("tr[data-id]");
      if (tr && e.target.tagName !== "A" && e.target.tagName !== "INPUT") go(rows().indexOf(tr));
    });

    document.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.target.closest("input, select, textarea, dialog")) return;
      const k = e.key;
      if (k === "j") go(cur + 1);
      else if (k === "k") go(cur - 1);
      else if (k === "Enter" && current()) current().querySelector("a").click();
      else if (!mayWrite) return;
      else if (k === "x" && current()) {
        const c = current().querySelector(".pick");
        c.checked = !c.checked;
        updateBulk();
      } else if (k === "a") act(targets(), "acknowledged");
      else if (k === "c") askClose();
      else if (k === "m") {  // assign to me
        const trs = targets();
        if (trs.length) {
          assign(trs.map((r) => r.dataset.id), table.dataset.me).then(() => {
            for (const tr of trs) tr.querySelector(".assignee").textContent = table.dataset.me;
            g.toast(g.t("aq.done"));
          }, failed);
        }
      }
      else return;
      e.preventDefault();
    });

    // new alerts (and alerts that grew) reach the open page without a reload
    async function poll() {
      const times = rows().map((r) => r.dataset.time).sort();
      const since = times.length ? times[times.length - 1] : loaded;
      const qs = new URLSearchParams({ since, status: filters.status, level: filters.level,
                                       q: filters.q });
      try {
        const r = await fetch("/ui/alerts/rows?" + qs, { credentials: "same-origin" });
        if (!r.ok) return;
        const tpl = document.createElement("template");
        tpl.innerHTML = await r.text();
        const fresh = Array.from(tpl.content.querySelectorAll("tr[data-id]"));
        let added = 0;
        for (const tr of fresh.reverse()) {
          if (left.has(tr.dataset.id)) continue;
          const old = tbody.querySelector(`tr[data-id="${CSS.escape(tr.dataset.id)}"]`);
          if (old) {  // an alert that grew or changed: the new row, same selection
            if (old.dataset.time === tr.dataset.time && old.dataset.status === tr.dataset.status) continue;
            tr.className = old.className;
            const was = old.querySelector(".pick"), now = tr.querySelector(".pick");
            if (was && now) now.checked = was.checked;
            old.replaceWith(tr);
            continue;
          }
          tbody.prepend(tr);
          added += 1;
          if (cur >= 0) cur += 1;
        }
        if (added) {
          const empty = document.getElementById("empty");
          if (empty) empty.remove();
          g.toast(g.t("aq.new", { n: added }));
        }
      } catch (e) { /* the next poll tries again */ }
    }
    // changes anyone makes to the shown alerts (acknowledge, close, assign) arrive live
    function changed(e) {
      const c = JSON.parse(e.data);
      const leaves = filters.status && filters.status !== c.status;
      if (leaves) {
        if (left.size > 5000) left.clear();  // an all-day page: the old ones are long past
        left.add(c.id);
      } else left.delete(c.id);  // back in the filter (reopened): a poll may show it again
      const tr = tbody.querySelector(`tr[data-id="${CSS.escape(c.id)}"]`);
      if (!tr) return;
      if (leaves) {
        const at = rows().indexOf(tr);
        tr.remove();
        if (at >= 0 && at < cur) cur -= 1;
        if (cur >= rows().length) cur = rows().length - 1;
        // someone else's change: the current row moves, the focus only if it was on the
        // queue (not out of the search field the analyst is typing in)
        const here = !document.activeElement || document.activeElement === document.body ||
          tbody.contains(document.activeElement);
        if (cur >= 0 && at >= 0) go(cur, here);
        updateBulk();
        return;
      }
      tr.dataset.status = c.status;
      tr.querySelector(".status").textContent = c.status_label;
      tr.querySelector(".assignee").textContent = c.assignee || "";
    }
    if (window.EventSource) new EventSource("/ui/alerts/live").addEventListener("change", changed);

    const loaded = new Date().toISOString();
    if (filters.sort === "newest") setInterval(poll, Number(table.dataset.poll || 10) * 1000);
    if (rows().length) go(0);
  }

  function detail(box) {
    if (box.dataset.mayWrite !== "true") return;
    const id = box.dataset.id;
    const ack = document.getElementById("act-ack");
    const close = document.getElementById("act-close");
    const buttons = (status) => {  // what the alert's state allows (the server decides)
      ack.disabled = status !== "open";
      close.disabled = status === "closed";
    };
    // the page shows the alert as the change's answer has it: no reload, no second read
    function done(doc) {
      const al = (doc.govsoc || {}).alert || {};
      const status = al.status || "open";
      let label = g.t("status." + status);
      if (al.close_reason) label += ` (${g.t("reason." + al.close_reason)})`;
      document.getElementById("d-status").textContent = label;
      buttons(status);
      const items = (al.notes || []).map((n) => {
        const li = document.createElement("li");
        const when = document.createElement("time");
        when.textContent = g.local(n.at, box.dataset.zone);
        const by = document.createElement("strong");
        by.textContent = n.by;
        li.append(when, " ", by, ": " + n.text);
        return li;
      });
      if (!items.length) {
        const li = document.createElement("li");
        li.className = "muted";
        li.textContent = g.t("ad.no_notes");
        items.push(li);
      }
      document.getElementById("notes").replaceChildren(...items);
      g.toast(g.t("aq.done"));
    }
    buttons(box.dataset.status);
    ack.addEventListener("click", () => transition([id], "acknowledged").then(done, failed));
    close.addEventListener("click", () =>
      transition([id], "closed", document.getElementById("d-reason").value).then(done, failed));
    document.getElementById("note-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const field = document.getElementById("note-text");
      const text = field.value.trim();
      if (text) {
        g.api("POST", `/alerts/${enc(id)}/notes`, { text }).then((doc) => {
          field.value = "";
          done(doc);
        }, failed);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const table = document.getElementById("queue");
    if (table) queue(table);
    const box = document.getElementById("detail");
    if (box) detail(box);
  });
})();
