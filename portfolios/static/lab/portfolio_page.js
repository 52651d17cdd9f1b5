/* The lab's portfolio page (templates/lab/portfolio.html): the equity and drawdown chart and
   the contribution bars from the page's JSON (json_script), and, while the run is queued or
   running, its progress from the REST API until it finishes. */
(function () {
  "use strict";
  const P = window.TradelabPlot;
  const data = JSON.parse(document.getElementById("portfolio-data").textContent);

  function drawEquity() {
    const node = document.getElementById("chart-equity");
    const curve = data.equity;
    if (!node || !curve.ts.length) return;
    P.plot(node, [
      { x: curve.ts, y: curve.equity, name: "Equity", type: "scatter", mode: "lines",
        line: { color: P.COLORS.accent, width: 1.5 }, yaxis: "y" },
      { x: curve.ts, y: curve.drawdown_pct, name: "Drawdown %", type: "scatter", mode: "lines",
        fill: "tozeroy", line: { color: P.COLORS.bad, width: 1 }, yaxis: "y2" },
    ], {
      // One time axis under both panes: equity above, drawdown below.
      xaxis: Object.assign({}, P.layout().xaxis, { anchor: "y2" }),
      yaxis: { title: { text: "Equity" }, domain: [0.34, 1], gridcolor: "#edf0f4",
        separatethousands: true, exponentformat: "none" },
      yaxis2: { title: { text: "Drawdown %" }, domain: [0, 0.28], anchor: "x",
        gridcolor: "#edf0f4" },
    });
  }

  function drawContribution() {
    const node = document.getElementById("chart-contribution");
    const bars = data.contribution;
    if (!node || !bars.instruments.length) return;
    P.plot(node, [{
      x: bars.instruments, y: bars.values, type: "bar", name: "Contribution",
      marker: { color: bars.values.map(v => (v >= 0 ? P.COLORS.good : P.COLORS.bad)) },
    }], {
      showlegend: false, hovermode: "closest",
      xaxis: { type: "category" },
      yaxis: { title: { text: "PnL (quote)" }, gridcolor: "#edf0f4", separatethousands: true,
        exponentformat: "none" },
    });
  }

  /* Queued or running: poll the run until it has finished, then show its results. */
  function watch() {
    const progress = document.getElementById("live-progress");
    const timer = setInterval(async () => {
      const answer = await window.Lab.api("GET", data.api);
      if (!answer.ok) return;
      if (progress) progress.value = answer.payload.progress;
      if (answer.payload.status !== "queued" && answer.payload.status !== "running") {
        clearInterval(timer);
        location.reload();
      }
    }, 2000);
  }

  drawEquity();
  drawContribution();
  if (data.live) watch();
})();
