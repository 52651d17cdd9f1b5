/* The back-office index: a bar per UTC day of this month's realised PnL, gains green and
   losses red. The days come in <script id="pnl-chart-data"> (json_script); a file of its own,
   as the Content-Security-Policy allows no inline script. */
(function () {
  "use strict";
  const node = document.getElementById("pnl-chart");
  const source = document.getElementById("pnl-chart-data");
  if (!node || !source || !window.TradelabPlot) return;
  const P = window.TradelabPlot;
  const data = JSON.parse(source.textContent);
  const pnl = data.net_pnl.map(Number);  // exact decimal strings; plotting needs numbers
  const base = P.layout();
  new ResizeObserver(function () { if (node.data) Plotly.Plots.resize(node); }).observe(node);
  P.plot(node, [{
    x: data.days, y: pnl, type: "bar", name: "Realised PnL",
    marker: { color: pnl.map(function (v) { return v < 0 ? P.COLORS.bad : P.COLORS.good; }) },
    hovertemplate: "%{x|%Y-%m-%d}: %{y:,.2f}<extra></extra>",
  }], {
    showlegend: false, hovermode: "closest", margin: { l: 64, r: 16, t: 8, b: 32 },
    xaxis: Object.assign({}, base.xaxis, { hoverformat: "%Y-%m-%d", tickformatstops: undefined,
      tickformat: "%m-%d" }),
  }, { displayModeBar: false });
})();
