/* The lab's study page (templates/lab/study.html): live progress over the study's WebSocket,
   the charts (optimisation history, parameter importance, Pareto front, the walk-forward's
   folds, in-sample against out-of-sample, stitched equity) from the REST API and the page's
   history.json, and the trials table page by page with "Open as backtest".
   No WebGL traces and no colorbars: the Content-Security-Policy refuses both. */
(function () {
  "use strict";
  const { api, errorLines, follow, eta } = window.Lab;
  const P = window.TradelabPlot;
  const data = JSON.parse(document.getElementById("study-data").textContent);
  const first = data.objectives[0] || { metric: "sharpe", direction: "maximize", label: "Sharpe ratio" };
  const maximize = first.direction !== "minimize";
  const TRIALS_PER_PAGE = 25;
  const GRID = "#edf0f4";

  // --- Words ----------------------------------------------------------------------------

  const label = metric => data.metric_labels[metric] || metric.replace(/_/g, " ");
  const stageKey = (role, index) => `${role}-${index}`;
  const stageLabel = (role, index) => role === "whole" ? "Whole period" : `Fold ${index + 1}`;

  function valueText(value) {
    if (typeof value === "boolean") return value ? "yes" : "no";
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : P.fmt(value);
    return String(value);
  }

  /* "fast 10 · slow 60", as backtests/presentation.py's params_text words them. */
  function paramsText(params) {
    const names = Object.keys(params || {});
    if (!names.length) return "defaults";
    return names.map(name => `${name.replace(/_/g, " ")} ${valueText(params[name])}`).join(" · ");
  }

  function valuesText(values) {
    if (!values || !values.length) return "—";
    return values.map((v, i) => `${data.objectives[i] ? data.objectives[i].label : "value"} ${P.fmt(v)}`).join(" · ");
  }

  function seconds(value) {
    if (value === null || value === undefined) return "—";
    return value < 1 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(value < 10 ? 2 : 1)} s`;
  }

  function axis(extra) { return Object.assign({ gridcolor: GRID, zeroline: false }, extra || {}); }

  function element(tag, props, parent) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    if (parent) parent.appendChild(node);
    return node;
  }

  // --- Optimisation history (and the Pareto front, from the same trials) ------------------

  const history = { stages: [], byKey: {} };

  function stageOf(role, index) {
    const key = stageKey(role, index);
    if (!history.byKey[key]) {
      const stage = { key, role, index, label: stageLabel(role, index), pareto_front: [],
        number: [], values: [], params: [], state: [], cache_hit: [] };
      history.byKey[key] = stage;
      history.stages.push(stage);
      history.stages.sort((a, b) => (a.role === b.role ? a.index - b.index : (a.role === "fold" ? -1 : 1)));
    }
    return history.byKey[key];
  }

  /* A stage's complete trials, by trial number: [number, values, params text]. */
  function completeTrials(stage) {
    const rows = [];
    stage.number.forEach((number, i) => {
      if (number !== null && stage.state[i] === "complete" && stage.values[i] && stage.values[i].length)
        rows.push([number, stage.values[i], stage.params[i]]);
    });
    return rows.sort((a, b) => a[0] - b[0]);
  }

  function drawHistory() {
    const node = document.getElementById("chart-history");
    if (!node) return;
    const traces = [];
    history.stages.forEach((stage, i) => {
      const rows = completeTrials(stage).filter(row => row[1][0] !== null);
      if (!rows.length) return;
      const color = P.COLORS.series[i % P.COLORS.series.length];
      const x = rows.map(r => r[0]), y = rows.map(r => r[1][0]);
      let best = null;
      const bestY = y.map(v => { if (best === null || (maximize ? v > best : v < best)) best = v; return best; });
      traces.push({ type: "scatter", mode: "markers", name: stage.label, legendgroup: stage.key, x, y,
        text: rows.map(r => r[2]), marker: { color, size: 6, opacity: 0.65 },
        hovertemplate: `${stage.label} · trial %{x}<br>%{text}<br>${first.label} %{y}<extra></extra>` });
      traces.push({ type: "scatter", mode: "lines", name: `${stage.label}: best so far`, legendgroup: stage.key,
        showlegend: false, x, y: bestY, line: { color, width: 2, shape: "hv" }, hoverinfo: "skip" });
    });
    document.getElementById("chart-history-empty").hidden = traces.length > 0;
    P.plot(node, traces, {
      hovermode: "closest",
      xaxis: axis({ title: { text: "Trial number" }, type: "linear", rangemode: "tozero" }),
      yaxis: axis({ title: { text: `${first.label} (${maximize ? "higher" : "lower"} is better)` } }),
    });
  }

  function drawPareto() {
    const node = document.getElementById("chart-pareto");
    if (!node || data.objectives.length < 2) return;
    // The whole period's front when there is one, else the last fold's.
    const stage = history.stages.find(s => s.role === "whole") || history.stages[history.stages.length - 1];
    const note = document.getElementById("chart-pareto-note");
    if (!stage) return;
    const rows = completeTrials(stage).filter(r => r[1][0] !== null && r[1][1] !== null);
    const front = new Set(stage.pareto_front);
    const on = rows.filter(r => front.has(r[0])).sort((a, b) => a[1][0] - b[1][0]);
    const off = rows.filter(r => !front.has(r[0]));
    const [a, b] = data.objectives;
    const hover = `trial %{customdata}<br>%{text}<br>${a.label} %{x}<br>${b.label} %{y}<extra></extra>`;
    P.plot(node, [
      { type: "scatter", mode: "markers", name: "Other trials", x: off.map(r => r[1][0]), y: off.map(r => r[1][1]),
        customdata: off.map(r => r[0]), text: off.map(r => r[2]), hovertemplate: hover,
        marker: { color: P.COLORS.muted, size: 6, opacity: 0.5 } },
      { type: "scatter", mode: "lines+markers", name: "Pareto front", x: on.map(r => r[1][0]), y: on.map(r => r[1][1]),
        customdata: on.map(r => r[0]), text: on.map(r => r[2]), hovertemplate: hover,
        marker: { color: P.COLORS.accent, size: 9 }, line: { color: P.COLORS.accent, width: 1, dash: "dot" } },
    ], {
      hovermode: "closest",
      xaxis: axis({ title: { text: `${a.label} (${a.direction === "minimize" ? "lower" : "higher"} is better)` }, type: "linear" }),
      yaxis: axis({ title: { text: `${b.label} (${b.direction === "minimize" ? "lower" : "higher"} is better)` } }),
    });
    note.textContent = `${stage.label}: ${rows.length} complete trials by their first two objectives; ` +
      (front.size ? `the ${front.size} that no other beats on both are the front.` : "the front is known once this optimisation has finished.");
  }

  let redraw = null;
  function scheduleHistory() {
    if (redraw) return;
    redraw = setTimeout(() => { redraw = null; drawHistory(); drawPareto(); }, 400);
  }

  async function loadHistory() {
    const result = await api("GET", data.urls.history);
    if (!result.ok) return;
    for (const stage of result.payload.stages) {
      const own = stageOf(stage.role, stage.index);
      Object.assign(own, { pareto_front: stage.pareto_front, number: stage.number, values: stage.values,
        params: stage.params, state: stage.state, cache_hit: stage.cache_hit });
    }
    drawHistory();
    drawPareto();
    fillStageFilter();
  }

  function addTrial(message) {
    if (!message.stage || !message.trial) return;
    const stage = stageOf(message.stage.role, message.stage.index);
    const trial = message.trial;
    if (trial.number !== null && stage.number.includes(trial.number)) return;
    stage.number.push(trial.number);
    stage.values.push(trial.values);
    stage.params.push(paramsText(trial.params));
    stage.state.push(trial.state);
    stage.cache_hit.push(trial.cache_hit);
    scheduleHistory();
  }

  // --- Parameter importance -------------------------------------------------------------

  function drawImportance() {
    const node = document.getElementById("chart-importance");
    const note = document.getElementById("chart-importance-note");
    const values = data.importance.values || {};
    const names = Object.keys(values).sort((a, b) => values[a] - values[b]);
    if (!names.length) {
      if (data.status === "succeeded") note.textContent = "Not measurable: too few complete trials, or a single searched parameter.";
      node.remove();  // nothing will be drawn here (the page reloads when the study ends)
      return;
    }
    P.plot(node, [{ type: "bar", orientation: "h", x: names.map(n => values[n]), y: names.map(n => n.replace(/_/g, " ")),
      marker: { color: P.COLORS.accent }, hovertemplate: "%{y}: %{x:.3f}<extra></extra>" }], {
      showlegend: false, hovermode: "closest", margin: { l: 110, r: 16, t: 10, b: 36 },
      xaxis: axis({ title: { text: "Share of the objective's variation" }, type: "linear", rangemode: "tozero" }),
      yaxis: axis({ type: "category" }),
    });
    note.textContent = `PED-ANOVA importance for ${first.label}, from ${data.importance.source}.`;
  }

  // --- The walk-forward's folds ---------------------------------------------------------

  function drawTimeline(folds) {
    const node = document.getElementById("chart-timeline");
    if (!node || !folds.length) return;
    const names = folds.map(f => `Fold ${f.index + 1}`);
    const span = (from, to) => Date.parse(to) - Date.parse(from);
    const bars = (name, color, from, to) => ({
      type: "bar", orientation: "h", name, y: names,
      base: folds.map(f => f[from]), x: folds.map(f => (f[from] && f[to] ? span(f[from], f[to]) : 0)),
      customdata: folds.map(f => `${P.fmtDate(f[from])} → ${P.fmtDate(f[to])}`),
      hovertemplate: `%{y} ${name.toLowerCase()}: %{customdata}<extra></extra>`,
      marker: { color }, width: 0.55,
    });
    P.plot(node, [
      bars("In sample", P.COLORS.accent, "is_start", "is_end"),
      bars("Out of sample", P.COLORS.series[1], "oos_start", "oos_end"),
    ], {
      barmode: "overlay", hovermode: "closest",
      height: Math.max(220, 70 + 42 * folds.length),
      yaxis: axis({ type: "category", autorange: "reversed" }),
    });
  }

  function foldMetrics(folds) {
    const inBoth = new Set();
    folds.forEach(f => Object.keys(f.is_metrics || {}).forEach(k => {
      if (typeof f.is_metrics[k] === "number" && f.oos_metrics && typeof f.oos_metrics[k] === "number") inBoth.add(k);
    }));
    const ordered = data.objectives.map(o => o.metric).filter(m => inBoth.has(m));
    Object.keys(data.metric_labels).forEach(m => { if (inBoth.has(m) && !ordered.includes(m)) ordered.push(m); });
    return ordered;
  }

  function drawFolds(folds, metric) {
    const node = document.getElementById("chart-folds");
    if (!node || !metric) return;
    const names = folds.map(f => `Fold ${f.index + 1}`);
    const pick = side => folds.map(f => (f[side] && typeof f[side][metric] === "number" ? f[side][metric] : null));
    P.plot(node, [
      { type: "bar", name: "In sample", x: names, y: pick("is_metrics"), marker: { color: P.COLORS.accent },
        hovertemplate: `%{x} in sample: %{y}<extra></extra>` },
      { type: "bar", name: "Out of sample", x: names, y: pick("oos_metrics"), marker: { color: P.COLORS.series[1] },
        hovertemplate: `%{x} out of sample: %{y}<extra></extra>` },
    ], {
      barmode: "group", hovermode: "closest",
      xaxis: axis({ type: "category" }), yaxis: axis({ title: { text: label(metric) }, zeroline: true }),
    });
  }

  async function loadFolds() {
    if (data.mode !== "walk_forward") return;
    const result = await api("GET", data.urls.folds);
    if (!result.ok) return;
    const folds = result.payload;
    drawTimeline(folds);
    const select = document.getElementById("fold-metric");
    const metrics = foldMetrics(folds);
    const chosen = select.value || metrics[0];
    select.replaceChildren(...metrics.map(m => element("option", { value: m, textContent: label(m), selected: m === chosen })));
    if (!select.dataset.bound) {
      select.dataset.bound = "1";
      select.addEventListener("change", () => drawFolds(folds, select.value));
    }
    drawFolds(folds, chosen);
  }

  // --- Equity ---------------------------------------------------------------------------

  async function loadEquity() {
    const node = document.getElementById("chart-equity");
    if (!node) return;
    if (data.status !== "succeeded") { node.remove(); return; }
    const result = await api("GET", `${data.urls.equity}?max_points=1500`);
    if (!result.ok) {
      document.getElementById("chart-equity-note").textContent = errorLines(result.payload).join(" ");
      return;
    }
    const curves = result.payload, traces = [];
    if (curves.stitched_oos.ts.length) traces.push({ type: "scatter", mode: "lines", name: "Out of sample, stitched",
      x: curves.stitched_oos.ts, y: curves.stitched_oos.equity, line: { color: P.COLORS.series[1], width: 2 } });
    if (curves.whole_period.ts.length) traces.push({ type: "scatter", mode: "lines",
      name: data.mode === "walk_forward" ? "Whole-period optimum (hindsight)" : "The optimum",
      x: curves.whole_period.ts, y: curves.whole_period.equity, line: { color: P.COLORS.accent, width: 1.5 } });
    P.plot(node, traces, { yaxis: axis({ title: { text: "Equity" }, separatethousands: true, exponentformat: "none" }) });
  }

  // --- Trials ---------------------------------------------------------------------------

  function fillStageFilter() {
    const select = document.getElementById("trials-stage");
    if (!select || history.stages.length < 2) return;
    const chosen = select.value;
    select.replaceChildren(element("option", { value: "", textContent: "all" }),
      ...history.stages.map(s => element("option", {
        value: s.role === "whole" ? "role=whole" : `role=fold&fold=${s.index}`, textContent: s.label })));
    select.value = chosen;
  }

  async function openTrial(trial, button) {
    const errors = document.getElementById("open-errors");
    errors.textContent = "";
    button.disabled = true;
    const result = await api("POST", data.urls.backtests, trial.backtest);
    if (result.ok) { location.href = data.urls.run.replace("{id}", result.payload.id); return; }
    button.disabled = false;
    errors.textContent = `Trial ${trial.number}: ` + errorLines(result.payload).join("\n");
  }

  function trialRow(trial) {
    const tr = element("tr");
    tr.dataset.trial = trial.id;
    tr.dataset.state = trial.state;
    const cells = [
      [stageLabel(trial.stage, trial.fold === null ? 0 : trial.fold)],
      [trial.number === null ? "—" : String(trial.number), "num"],
      [paramsText(trial.params)],
      [trial.state === "complete" ? valuesText(trial.values) : (trial.error || "—")],
      [trial.state + (trial.state === "complete" && trial.feasible === false ? " (breaks a constraint)" : "")],
      [seconds(trial.duration_seconds), "num"],
      [trial.cache_hit ? "hit" : ""],
    ];
    for (const [text, cls] of cells) element("td", { textContent: text, className: cls || "" }, tr);
    const action = element("td", {}, tr);
    if (trial.state === "complete" && data.can_open) {
      const button = element("button", { type: "button", className: "secondary open-trial", textContent: "Open as backtest" }, action);
      button.addEventListener("click", () => openTrial(trial, button));
    }
    return tr;
  }

  function trialsTable() {
    const table = document.getElementById("trials");
    const body = table.querySelector("tbody");
    const prev = document.getElementById("trials-prev"), next = document.getElementById("trials-next");
    const pageLabel = document.getElementById("trials-page"), stage = document.getElementById("trials-stage");
    let page = 0, links = { next: null, previous: null };

    async function show(url) {
      prev.disabled = next.disabled = true;
      const result = await api("GET", url);
      if (!result.ok) { pageLabel.textContent = errorLines(result.payload).join(" "); return; }
      links = { next: result.payload.next, previous: result.payload.previous };
      const rows = result.payload.results;
      if (rows.length) body.replaceChildren(...rows.map(trialRow));
      else {
        const empty = element("tr");
        element("td", { colSpan: 8, className: "empty", textContent: "No trials yet." }, empty);
        body.replaceChildren(empty);
      }
      const from = page * TRIALS_PER_PAGE;
      pageLabel.textContent = rows.length ? `${from + 1}–${from + rows.length}` : "";
      prev.disabled = !links.previous;
      next.disabled = !links.next;
    }

    const firstPage = () => {
      page = 0;
      show(`${data.urls.trials}?limit=${TRIALS_PER_PAGE}${stage.value ? "&" + stage.value : ""}`);
    };
    next.addEventListener("click", () => { if (links.next) { page += 1; show(links.next); } });
    prev.addEventListener("click", () => { if (links.previous) { page -= 1; show(links.previous); } });
    stage.addEventListener("change", firstPage);
    firstPage();
    return { refresh: firstPage };
  }

  // --- Live progress --------------------------------------------------------------------

  function describe(m) {
    if (m.status === "queued") return "Waiting for a worker…";
    let text = `${m.trials_done} / ${m.trials_total} trials`;
    if (m.trials_cached) text += ` (${m.trials_cached} from cache)`;
    if (m.trials_failed) text += `, ${m.trials_failed} failed`;
    if (m.mode === "walk_forward") text += ` · folds ${m.folds_done} / ${m.folds_total}`;
    if (m.stage && m.status === "running") text += ` · now ${stageLabel(m.stage.role, m.stage.index)}`;
    return text + eta(m.eta_seconds);
  }

  function live(trials) {
    const section = document.getElementById("live");
    if (!section) return;
    const bar = document.getElementById("live-progress"), text = document.getElementById("live-text");
    const bestLine = document.getElementById("live-best");
    const strip = document.getElementById("strip-trials");
    let foldsTimer = null;
    follow(section.dataset.ws, m => {
      bar.value = m.progress;
      text.textContent = describe(m);
      if (m.best_values) bestLine.textContent = `Best so far: ${valuesText(m.best_values)} with ${paramsText(m.best_parameters)}`;
      strip.textContent = `${m.trials_done} / ${m.trials_total}`;
      const status = document.querySelector("#run-status .status");
      if (status) { status.textContent = m.status; status.className = "status status-" + m.status; }
      if (m.type === "trial") addTrial(m);
      if (m.type === "fold" && !foldsTimer) foldsTimer = setTimeout(() => { foldsTimer = null; loadFolds(); trials.refresh(); }, 500);
      if (m.type === "final" || ["succeeded", "failed", "cancelled"].includes(m.status)) {
        const cancel = document.getElementById("cancel");
        if (cancel) cancel.hidden = true;
      }
      if (m.type === "final") setTimeout(() => location.reload(), 300);
    });
    const cancel = document.getElementById("cancel");
    if (cancel) cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      const result = await api("POST", data.urls.cancel);
      if (result.ok || result.status === 409) location.reload();
      else {
        cancel.disabled = false;
        document.getElementById("cancel-errors").textContent = errorLines(result.payload).join("\n");
      }
    });
  }

  const trials = trialsTable();
  live(trials);
  loadHistory();
  drawImportance();
  loadFolds();
  loadEquity();
})();
