/* A backtest run's admin page: equity above, drawdown below, one shared time axis, so a zoom
   or pan on either moves both. The curve comes in <script id="run-equity-data"> (json_script);
   a file of its own, as the Content-Security-Policy allows no inline script. */
(function () {
  "use strict";
  const node = document.getElementById("run-equity-chart");
  const source = document.getElementById("run-equity-data");
  if (!node || !source || !window.TradelabPlot) return;
  const P = window.TradelabPlot;
  const curve = JSON.parse(source.textContent);
  const ts = curve.ts.map(function (t) { return new Date(t); });
  const traces = [
    { x: ts, y: curve.equity, name: "Equity", type: "scatter", mode: "lines",
      line: { color: P.COLORS.accent, width: 1.5 }, xaxis: "x", yaxis: "y" },
    { x: ts, y: curve.drawdown_pct, name: "Drawdown %", type: "scatter", mode: "lines",
      fill: "tozeroy", line: { color: P.COLORS.bad, width: 1 }, xaxis: "x", yaxis: "y2" },
  ];
  const base = P.layout();
  // Deferred, so the admin's sidebar has taken its place; and refitted whenever the box
  // changes width (the sidebar toggles), which plotly's "responsive" (window resizes) misses.
  new ResizeObserver(function () { if (node.data) Plotly.Plots.resize(node); }).observe(node);
  P.plot(node, traces, {
    // Two rows on one x axis: the axes are linked because they are the same axis.
    xaxis: Object.assign({}, base.xaxis, { anchor: "y2" }),
    yaxis: Object.assign({}, base.yaxis, { domain: [0.34, 1], title: { text: "Equity" } }),
    yaxis2: Object.assign({}, base.yaxis, { domain: [0, 0.26], title: { text: "Drawdown %" },
      rangemode: "nonpositive" }),
  });
})();
