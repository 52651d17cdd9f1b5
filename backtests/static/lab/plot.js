/* Shared plotly conventions for every chart in the lab and the admin.
   Times are UTC on a 24-hour clock; prices are shown in full (never "22.1k"); the modebar
   keeps zoom, pan, reset and a PNG download, and nothing is sent anywhere. */
(function () {
  "use strict";
  const COLORS = { accent: "#2f6fd0", good: "#1a9b5b", bad: "#d2413a", muted: "#66768a",
    line: "#dde3ea", warn: "#c98a00", series: ["#2f6fd0", "#e07b00", "#1a9b5b", "#8e44ad", "#d2413a"] };

  const CONFIG = { responsive: true, displaylogo: false, scrollZoom: true,
    modeBarButtonsToRemove: ["lasso2d", "select2d", "autoScale2d", "sendDataToCloud"] };

  function layout(overrides) {
    const base = {
      margin: { l: 64, r: 16, t: 24, b: 36 },
      font: { family: "system-ui, -apple-system, Segoe UI, sans-serif", size: 12, color: "#1d2733" },
      paper_bgcolor: "#fff", plot_bgcolor: "#fff",
      hovermode: "x unified", dragmode: "zoom", showlegend: true,
      legend: { orientation: "h", y: 1.02, yanchor: "bottom", x: 0, xanchor: "left" },
      xaxis: { type: "date", gridcolor: "#edf0f4", hoverformat: "%Y-%m-%d %H:%M UTC",
        tickformatstops: [
          { dtickrange: [null, 86400000], value: "%Y-%m-%d\n%H:%M" },
          { dtickrange: [86400000, null], value: "%Y-%m-%d" }] },
      yaxis: { gridcolor: "#edf0f4", separatethousands: true, exponentformat: "none" },
    };
    return Object.assign(base, overrides || {});
  }

  /* Numbers as people read them: grouped thousands, 2 decimals from 100 up, else 4
     significant digits; prices keep their precision (no k/M abbreviations). */
  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "—";
    const a = Math.abs(v);
    if (a >= 100) return v.toLocaleString("en-US", { maximumFractionDigits: 2, minimumFractionDigits: 2 });
    return Number(v.toPrecision(4)).toString();
  }

  function fmtDate(iso) {
    return iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 16) + " UTC" : "—";
  }

  function plot(node, traces, layoutOverrides, config) {
    return Plotly.newPlot(node, traces, layout(layoutOverrides), Object.assign({}, CONFIG, config || {}));
  }

  window.TradelabPlot = { COLORS, CONFIG, layout, fmt, fmtDate, plot };
})();
