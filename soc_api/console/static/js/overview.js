/* 态势感知: the page paints its frame, then this draws the overview (and the wall screen)
   from /ui/overview.json (in two parts), read again every `data-refresh` seconds. */
(function () {
  "use strict";
  const g = window.govsoc;
  const charts = {};
  let grid, dark, data, traffic, range = "24h";

  function chart(id) {
    if (!charts[id]) {
      charts[id] = echarts.init(document.getElementById(id), dark ? "dark" : null,
                                { renderer: "canvas" });
    }
    return charts[id];
  }

  const base = () => ({
    backgroundColor: "transparent", animation: false,
    textStyle: { fontFamily: '"Noto Sans CJK SC", "Noto Sans SC", sans-serif' },
    tooltip: { trigger: "item" },
  });

  function bars(id, pairs, horizontal, color) {
    const names = pairs.map((p) => String(p[0]));
    const values = pairs.map((p) => p[1]);
    const cat = { type: "category", data: horizontal ? names.slice().reverse() : names,
                  axisLabel: { width: 130, overflow: "truncate" } };
    const val = { type: "value", minInterval: 1 };
    chart(id).setOption(Object.assign(base(), {
      grid: { left: horizontal ? 140 : 40, right: 20, top: 10, bottom: 30 },
      xAxis: horizontal ? val : cat, yAxis: horizontal ? cat : val,
      series: [{ type: "bar", name: g.t("ov.count"), itemStyle: { color },
                 data: horizontal ? values.slice().reverse() : values }],
    }), true);
  }

  function drawTrend() {
    const pts = data.trend[range] || [];
    chart("chart-trend").setOption(Object.assign(base(), {
      tooltip: { trigger: "axis" },
      grid: { left: 40, right: 20, top: 20, bottom: 30 },
      xAxis: { type: "category", data: pts.map((p) => p[0]) },
      yAxis: { type: "value", minInterval: 1 },
      series: [{ type: "line", name: g.t("ov.count"), areaStyle: {}, smooth: true,
                 data: pts.map((p) => p[1]) }],
    }), true);
  }

  function text(id, value) {
    const el = document.getElementById(id);
    if (el) el.textContent = value;
  }

  function el(tag, cls, content) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (content !== undefined) e.textContent = content;
    return e;
  }

  function drawLists() {
    const idx = data.security_index;
    text("index-value", idx.value);
    text("index-band", idx.band_label);
    for (const span of document.querySelectorAll("[data-part]")) {
      span.textContent = idx[span.dataset.part];
    }
    text("open-alerts", data.open_alerts);
    text("updated", data.generated_local);
    const list = document.getElementById("newest");
    if (list) {
      list.replaceChildren();
      for (const a of data.newest) {
        const li = el("li");
        li.append(el("time", "", a.time_local), " ",
                  el("span", "level level-" + a.level, a.level_label), " ");
        const link = el("a", "", a.title);
        link.href = "/ui/alerts/" + encodeURIComponent(a.id);
        li.append(link);
        list.append(li);
      }
      if (!data.newest.length) list.append(el("li", "muted", g.t("ov.none")));
    }
    const h = data.health;
    const box = document.getElementById("health");
    box.replaceChildren();
    const dl = el("dl", "facts");
    dl.append(el("dt", "", g.t("ov.health.store")), el("dd", "", h.store));
    dl.append(el("dt", "", g.t("ov.health.engine")),
              el("dd", "", `${h.rules} ${g.t("ov.health.rules")} · ${h.rule_errors} ` +
                           `${g.t("ov.health.rule_errors")} · ${h.last_run_local || "-"}`));
    dl.append(el("dt", "", g.t("ov.health.collectors")));
    const dd = el("dd");
    if (!h.collectors.length) dd.textContent = g.t("ov.health.none");
    for (const c of h.collectors) {
      dd.append(el("div", c.store_up && !c.errors ? "ok" : "bad",
                   `${c.name}@${c.host} · ${c.seen_local} · ${c.events_out} / ${c.dropped}`));
    }
    dl.append(dd);
    box.append(dl);
  }

  function draw() {
    const idx = data.security_index;
    chart("chart-index").setOption(Object.assign(base(), {
      series: [{ type: "gauge", min: 0, max: 100, progress: { show: true, width: 14 },
                 axisLine: { lineStyle: { width: 14 } }, pointer: { show: false },
                 axisLabel: { distance: 18 }, splitLine: { distance: 0 },
                 detail: { valueAnimation: false, fontSize: dark ? 44 : 32, offsetCenter: [0, 0],
                           formatter: "{value}" },
                 title: { offsetCenter: [0, "35%"] },
                 data: [{ value: idx.value, name: idx.band_label }] }],
    }), true);
    drawTrend();
    chart("chart-level").setOption(Object.assign(base(), {
      color: ["#b91c1c", "#ea580c", "#d97706", "#2563eb", "#6b7280"],
      legend: { bottom: 0 },
      series: [{ type: "pie", radius: ["35%", "65%"], center: ["50%", "45%"],
                 label: { formatter: "{b}: {c}" },
                 data: data.by_level.map((p) => ({ name: p[0], value: p[1] })) }],
    }), true);
    bars("chart-tactic", data.by_tactic, true, "#7c3aed");
    bars("chart-dept", data.by_department, false, "#0891b2");
    drawLists();
  }

  function drawTraffic() {
    bars("chart-sources", traffic.top_sources, true, "#dc2626");
    bars("chart-targets", traffic.top_targets, true, "#2563eb");
  }

  async function load(part) {
    const r = await fetch("/ui/overview.json?part=" + part, { credentials: "same-origin" });
    if (r.status === 401) {
      window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
      throw new Error("logged out");
    }
    if (!r.ok) throw new Error(String(r.status));
    return r.json();
  }

  // the alerts' figures first, the day's traffic after: the traffic is the slow part on a
  // large store, and the rest of the page need not wait for it (asked for together, the
  // two would share the store and both come late)
  function refresh() {
    const failed = () => g.toast(g.t("ov.refresh_failed"), true);
    load("core").then((d) => { data = d; draw(); }, failed)
      .then(() => load("traffic"))
      .then((d) => { traffic = d; drawTraffic(); }, failed);
  }

  document.addEventListener("DOMContentLoaded", () => {
    grid = document.querySelector("[data-refresh]");
    dark = grid.dataset.theme === "dark";
    for (const b of document.querySelectorAll("[data-range]")) {
      b.addEventListener("click", () => {
        range = b.dataset.range;
        for (const o of document.querySelectorAll("[data-range]")) {
          o.setAttribute("aria-pressed", String(o === b));
        }
        if (data) drawTrend();
      });
    }
    refresh();
    setInterval(refresh, Number(grid.dataset.refresh || 30) * 1000);
    window.addEventListener("resize", () => Object.values(charts).forEach((c) => c.resize()));
  });
})();
