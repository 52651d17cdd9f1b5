/* The lab's comparison page: the runs' equity curves overlaid, each as the value of 100
   invested at its start (lab_research.normalised_curve). The metrics table is server-rendered. */
(function () {
  "use strict";
  const P = window.TradelabPlot;
  const data = JSON.parse(document.getElementById("compare-data").textContent);
  const traces = data.curves.map((curve, i) => ({
    type: "scatter", mode: "lines", name: curve.label, x: curve.ts, y: curve.value,
    line: { width: 1.6, color: P.COLORS.series[i % P.COLORS.series.length] },
    hovertemplate: "%{y:.2f}<extra>%{fullData.name}</extra>",
  }));
  P.plot(document.getElementById("chart-compare"), traces, {
    height: 420, yaxis: { title: { text: "Value of 100 invested" }, gridcolor: "#edf0f4", separatethousands: true, exponentformat: "none" },
    shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: 100, y1: 100, line: { color: "#9aa8b8", dash: "dot", width: 1 } }],
  });
})();
