/* What every console page shares: the message catalogue, the CSRF token, calls to the API,
   a status line, logging out. No string of its own: all come from the page's catalogue. */
(function () {
  "use strict";
  const strings = JSON.parse(document.getElementById("strings").textContent);
  const meta = document.querySelector('meta[name="csrf-token"]');

  function t(key, values) {
    let s = strings[key] || key;
    for (const [k, v] of Object.entries(values || {})) s = s.replace("{" + k + "}", v);
    return s;
  }

  async function api(method, url, body) {
    const headers = { "x-csrf-token": meta ? meta.content : "" };
    if (body !== undefined) headers["content-type"] = "application/json";
    const r = await fetch(url, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) {
      const err = new Error((data && data.detail) || String(r.status));
      err.status = r.status;
      err.detail = data && data.detail;
      throw err;
    }
    return data;
  }

  let timer = null;
  function toast(message, bad) {
    const el = document.getElementById("toast");
    if (!el) return;
    el.textContent = message;
    el.className = bad ? "show bad" : "show";
    clearTimeout(timer);
    timer = setTimeout(() => { el.className = ""; }, 5000);
  }

  // a time in the viewer's zone (the page's preference), as the server formats its own
  function local(iso, zone) {
    if (!iso) return "";
    const f = new Intl.DateTimeFormat("sv-SE", { timeZone: zone, year: "numeric", month: "2-digit",
      day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
    return f.format(new Date(iso));
  }

  window.govsoc = { t, api, toast, local };

  document.addEventListener("DOMContentLoaded", () => {
    const out = document.getElementById("logout");
    if (out) {
      out.addEventListener("click", async () => {
        try { await api("POST", "/auth/logout"); } catch (e) { /* the session is gone anyway */ }
        window.location.assign("/login");
      });
    }
  });
})();
