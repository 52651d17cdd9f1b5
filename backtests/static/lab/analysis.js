/* A finished run's research panels (templates/lab/_run_analysis.html): monthly returns as a
   heatmap table, the trades' pnl % distribution, and the breakdowns by exit reason and by
   holding time, from lab_research.lab_run_analysis. */
(function () {
  "use strict";
  const root = document.getElementById("run-analysis");
  if (!root) return;
  const GOOD = [26, 155, 91], BAD = [210, 65, 58];

  function fmt(v) {
    if (window.TradelabPlot) return window.TradelabPlot.fmt(v);
    return v === null || v === undefined ? "—" : String(v);
  }
  const pct = v => (v === null || v === undefined ? "—" : v.toFixed(2));

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  /* Green for gains, red for losses, stronger with size; white at 0. */
  function shade(value, scale) {
    if (value === null || value === undefined) return "";
    const strength = Math.min(Math.abs(value) / scale, 1) * 0.85;
    const [r, g, b] = value >= 0 ? GOOD : BAD;
    return `rgba(${r},${g},${b},${strength.toFixed(3)})`;
  }

  function monthly(data) {
    const box = document.getElementById("analysis-monthly");
    box.textContent = "";
    if (!data.years.length) { box.textContent = "No equity curve stored."; return; }
    const values = data.returns.flat().filter(v => v !== null);
    const scale = Math.max(...values.map(Math.abs), 0.01);
    const table = document.createElement("table");
    table.className = "data monthly-returns";
    const head = table.createTHead().insertRow();
    for (const name of ["Year", ...data.months, "Year"]) {
      const th = document.createElement("th"); th.textContent = name; head.appendChild(th);
    }
    head.lastChild.textContent = "Total";
    const body = table.createTBody();
    data.years.forEach((year, i) => {
      const row = body.insertRow();
      const th = document.createElement("th"); th.textContent = year; row.appendChild(th);
      data.returns[i].forEach((value, m) => {
        const td = cell(row, pct(value), "num");
        td.style.backgroundColor = shade(value, scale);
        td.title = `${data.months[m]} ${year}: ${pct(value)}%`;
      });
      const total = cell(row, pct(data.year_totals[i]), "num year-total");
      total.style.backgroundColor = shade(data.year_totals[i], scale);
    });
    box.appendChild(table);
    const legend = document.getElementById("analysis-monthly-legend");
    legend.textContent = "";
    const caption = document.createElement("span");
    caption.className = "hint"; caption.textContent = "Colour scale, centred on 0: ";
    legend.appendChild(caption);
    for (const step of [-1, -0.5, 0, 0.5, 1]) {
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.backgroundColor = shade(step * scale, scale) || "#fff";
      swatch.textContent = (step > 0 ? "+" : "") + (step * scale).toFixed(2) + "%";
      legend.appendChild(swatch);
    }
  }

  function histogram(data, open) {
    const node = document.getElementById("analysis-pnl");
    const note = document.getElementById("analysis-pnl-note");
    if (!data.trades) { node.textContent = "No closed trades."; return; }
    const centres = data.edges.slice(0, -1).map((edge, i) => (edge + data.edges[i + 1]) / 2);
    const width = data.edges[1] - data.edges[0];
    const P = window.TradelabPlot;
    const bar = (name, counts, color) => ({
      type: "bar", name, x: centres, y: counts, width, marker: { color },
      hovertemplate: `${name}: %{y} trades<br>%{customdata}<extra></extra>`,
      customdata: centres.map((c, i) => `${pct(data.edges[i])}% to ${pct(data.edges[i + 1])}%`),
    });
    P.plot(node, [bar("Winners", data.winners, P.COLORS.good), bar("Losers", data.losers, P.COLORS.bad)], {
      height: 300, barmode: "stack", bargap: 0.05, hovermode: "closest",
      xaxis: { type: "linear", title: { text: "PnL % per trade" }, gridcolor: "#edf0f4", zeroline: true },
      yaxis: { title: { text: "Trades" }, gridcolor: "#edf0f4" },
    });
    note.textContent = `${data.trades} closed trades, in bins of ${fmt(width)}%` + (open ? `; ${open} still open at the end left out.` : ".");
  }

  function breakdown(id, rows, first) {
    const body = document.querySelector(`#${id} tbody`);
    body.textContent = "";
    if (!rows.length) { const r = body.insertRow(); cell(r, "No closed trades.", "empty").colSpan = 6; return; }
    for (const row of rows) {
      const tr = body.insertRow();
      cell(tr, first(row));
      cell(tr, row.count.toLocaleString("en-US"), "num");
      cell(tr, pct(row.win_rate_pct), "num");
      const sign = v => (v === null ? "num" : v >= 0 ? "num pos" : "num neg");
      cell(tr, fmt(row.total_pnl), sign(row.total_pnl));
      cell(tr, fmt(row.avg_pnl), sign(row.avg_pnl));
      cell(tr, pct(row.avg_pnl_pct), sign(row.avg_pnl_pct));
    }
  }

  async function load() {
    const response = await fetch(root.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const data = await response.json();
    if (!response.ok) { document.getElementById("analysis-monthly").textContent = data.detail || "Not available."; return; }
    monthly(data.monthly);
    breakdown("analysis-exit-reasons", data.exit_reasons, row => row.label);
    breakdown("analysis-durations", data.durations, row => row.bucket);
    document.getElementById("analysis-trades-note").textContent =
      `Closed trades only (${data.closed_trades})` + (data.open_trades ? `; ${data.open_trades} still open at the end left out.` : ".");
    // run.html loads plotly.js (before this deferred script runs) on a finished run's page.
    if (window.Plotly && window.TradelabPlot) histogram(data.pnl_histogram, data.open_trades);
    root.dataset.ready = "1";
  }

  load();
})();
