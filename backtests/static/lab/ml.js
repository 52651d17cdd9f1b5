/* An ML predictor run's diagnostics (templates/lab/_run_ml.html), from the run's
   /api/v1/backtests/<id>/ml/ read: P(up) over the close, per-fold out-of-sample metrics,
   the pooled confusion matrix and the mean feature importances. */
(function () {
  "use strict";
  const root = document.getElementById("run-ml");
  if (!root) return;

  const num = v => (v === null || v === undefined ? "—" : Number(v).toFixed(3));

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function probability(P, data) {
    const s = data.series;
    P.plot(document.getElementById("ml-probability"), [
      { type: "scatter", mode: "lines", name: "Close", x: s.ts, y: s.close,
        line: { color: P.COLORS.muted, width: 1 } },
      { type: "scatter", mode: "lines", name: "P(up)", x: s.ts, y: s.probability, yaxis: "y2",
        line: { color: P.COLORS.accent, width: 1 } },
    ], {
      height: 340,
      yaxis: { title: { text: "Close" }, gridcolor: "#edf0f4", separatethousands: true, exponentformat: "none" },
      yaxis2: { title: { text: "P(up)" }, overlaying: "y", side: "right", range: [0, 1], showgrid: false },
      margin: { l: 64, r: 56, t: 24, b: 36 },
    });
  }

  function folds(P, data) {
    const x = data.folds.map(f => f.fold);
    const line = (name, key, color) => ({ type: "scatter", mode: "lines+markers", name, x,
      y: data.folds.map(f => f[key]), line: { color } });
    P.plot(document.getElementById("ml-folds"), [
      line("Accuracy", "accuracy", P.COLORS.series[0]),
      line("Precision", "precision", P.COLORS.series[1]),
      line("Recall", "recall", P.COLORS.series[2]),
      line("ROC AUC", "roc_auc", P.COLORS.series[3]),
    ], {
      height: 280, hovermode: "x unified",
      xaxis: { type: "linear", title: { text: "Fold" }, gridcolor: "#edf0f4", dtick: 1 },
      yaxis: { range: [0, 1], gridcolor: "#edf0f4" },
      shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: 0.5, y1: 0.5,
        line: { color: P.COLORS.bad, dash: "dot", width: 1 } }],
    });
    const body = document.querySelector("#ml-fold-table tbody");
    body.textContent = "";
    for (const f of data.folds) {
      const row = body.insertRow();
      cell(row, String(f.fold), "num");
      cell(row, `${f.predict_start}–${f.predict_end - 1}`, "num");
      cell(row, `${f.train_start}–${f.train_end - 1}`, "num");
      cell(row, num(f.accuracy), "num");
      cell(row, num(f.precision), "num");
      cell(row, num(f.recall), "num");
      cell(row, num(f.roc_auc), "num");
      cell(row, f.reused ? "reused" : "trained");
    }
  }

  function confusion(data) {
    const body = document.querySelector("#ml-confusion tbody");
    body.textContent = "";
    const total = data.confusion.flat().reduce((a, b) => a + b, 0) || 1;
    ["Actually down", "Actually up"].forEach((label, i) => {
      const row = body.insertRow();
      const th = document.createElement("th"); th.textContent = label; row.appendChild(th);
      data.confusion[i].forEach((count, j) => {
        const td = cell(row, String(count), "num");
        const [r, g, b] = i === j ? [26, 155, 91] : [210, 65, 58];
        td.style.backgroundColor = `rgba(${r},${g},${b},${(0.85 * count / total).toFixed(3)})`;
      });
    });
  }

  function importance(P, data) {
    const names = data.feature_names.slice().sort(
      (a, b) => (data.importances[a] || 0) - (data.importances[b] || 0));
    const bar = (name, values, color) => ({ type: "bar", orientation: "h", name,
      y: names, x: names.map(n => values[n] || 0), marker: { color } });
    P.plot(document.getElementById("ml-importance"), [
      bar("Model importance", data.importances, P.COLORS.accent),
      bar("Permutation (accuracy drop)", data.permutation_importances, P.COLORS.series[1]),
    ], {
      height: Math.max(240, 22 * names.length + 80), barmode: "group", hovermode: "closest",
      xaxis: { type: "linear", gridcolor: "#edf0f4", zeroline: true },
      yaxis: { automargin: true },
      margin: { l: 150, r: 16, t: 24, b: 36 },
    });
  }

  fetch(root.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(response => (response.ok ? response.json() : Promise.reject(response.status)))
    .then(data => {
      const P = window.TradelabPlot;
      probability(P, data);
      folds(P, data);
      confusion(data);
      importance(P, data);
      root.dataset.ready = "true";
    })
    .catch(status => {
      document.getElementById("ml-probability").textContent =
        `The diagnostics could not be loaded (${status}).`;
    });
})();
