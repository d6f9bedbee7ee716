/* Event search: the histogram of the hits over the chosen span. */
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", () => {
    const pts = JSON.parse(document.getElementById("histogram-data").textContent);
    const c = echarts.init(document.getElementById("chart-histogram"), null,
                           { renderer: "canvas" });
    c.setOption({
      animation: false, tooltip: { trigger: "axis" },
      grid: { left: 50, right: 20, top: 10, bottom: 30 },
      xAxis: { type: "category", data: pts.map((p) => p[0]) },
      yAxis: { type: "value", minInterval: 1 },
      series: [{ type: "bar", name: window.govsoc.t("ov.count"), itemStyle: { color: "#2563eb" },
                 data: pts.map((p) => p[1]) }],
    });
    window.addEventListener("resize", () => c.resize());
  });
})();
