/* A sweep's ranking metric by parameter, shared by the lab's sweep page and the admin's.
   The server computes each view (backtests/lab_research.py heatmap_data): two parameters on
   the axes, every other varied one sliced at a value or folded with max/min/mean/median.
   This file draws it with plotly, offers those choices, and starts a clicked combination
   as a backtest through the API.

   SweepHeatmap.mount() wires a page holding #sweep-heatmap[data-url], the json_script
   #sweep-open (lab_research.sweep_research's open_data) and .open-combo buttons. */
(function () {
  "use strict";

  const SCALE = [[0, "#d2413a"], [0.5, "#f6f1d3"], [1, "#1a9b5b"]];
  const AGGREGATES = [["max", "highest"], ["min", "lowest"], ["mean", "mean"], ["median", "median"]];

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function errorText(payload) {
    if (window.Lab && window.Lab.errorLines) return window.Lab.errorLines(payload).join("\n");
    return payload ? JSON.stringify(payload) : "Request failed.";
  }

  function fmt(v) {
    if (window.TradelabPlot) return window.TradelabPlot.fmt(v);
    return v === null || v === undefined ? "—" : String(v);
  }

  /* Start `params` as a backtest with the sweep's settings, then show the new run. */
  async function open(request, params, options) {
    const errors = options && options.errors;
    if (errors) errors.textContent = "";
    if (!request || !request.body) {
      if (errors) errors.textContent = request ? request.refused : "This sweep cannot be opened.";
      return;
    }
    const response = await fetch(request.url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(Object.assign({}, request.body, { parameters: params })),
    });
    let payload = null;
    try { payload = await response.json(); } catch (e) { payload = null; }
    if (response.ok) location.href = request.run_url.replace("{id}", payload.id);
    else if (errors) errors.textContent = errorText(payload);
  }

  function element(tag, attrs, parent) {
    const node = document.createElement(tag);
    Object.assign(node, attrs || {});
    if (parent) parent.appendChild(node);
    return node;
  }

  function select(parent, label, name, options, chosen) {
    const wrap = element("label", { textContent: label + " " }, parent);
    const input = element("select", { name }, wrap);
    for (const [value, text] of options) element("option", { value, textContent: text }, input);
    input.value = chosen;
    return input;
  }

  function ruleValue(rule) {
    return rule.kind === "at" ? "at:" + JSON.stringify(rule.value) : rule.kind;
  }

  function buildControls(box, data, onChange) {
    box.textContent = "";
    if (!data.y) return;
    const names = data.params.map(p => [p.name, p.label]);
    select(box, "Across", "x", names, data.x);
    select(box, "Up", "y", names, data.y);
    for (const param of data.params) {
      if (param.name === data.x || param.name === data.y) continue;
      const options = param.values.map((value, i) => ["at:" + JSON.stringify(value), "fixed at " + param.labels[i]]);
      for (const [kind, words] of AGGREGATES) options.push([kind, words + " over its values"]);
      select(box, param.label, "rule." + param.name, options, ruleValue(data.rules[param.name])).dataset.param = param.name;
    }
    box.querySelectorAll("select").forEach(input => input.addEventListener("change", () => onChange(input)));
  }

  function query(box, data, changed) {
    const values = {};
    box.querySelectorAll("select").forEach(input => { values[input.name] = input.value; });
    // Choosing an axis that the other axis holds swaps them.
    if (changed.name === "x" && values.x === data.y) values.y = data.x;
    if (changed.name === "y" && values.y === data.x) values.x = data.y;
    const params = new URLSearchParams({ x: values.x, y: values.y });
    for (const [name, value] of Object.entries(values)) {
      const param = name.startsWith("rule.") ? name.slice(5) : null;
      if (param && param !== values.x && param !== values.y) params.set(name, value);
    }
    return params;
  }

  function heatmapTraces(data) {
    const traces = [{
      type: "heatmap", name: data.metric_label, x: data.x_labels, y: data.y_labels, z: data.z,
      customdata: data.hover, hovertemplate: "%{customdata}<extra></extra>", hoverongaps: false,
      colorscale: SCALE, reversescale: !!data.minimize, xgap: 1, ygap: 1,
      texttemplate: "%{z:.3g}", textfont: { size: 11 },
      // plotly's own colorbar sets style="" attributes, which the CSP refuses: the legend
      // is drawn in HTML instead (legend()), on the same zmin..zmax.
      showscale: false, zmin: data.zmin, zmax: data.zmax,
    }];
    return traces;
  }

  function barTraces(data) {
    const colors = data.z.map((_, i) => data.best && data.best.x_index === i ? "#17212e" : "#2f6fd0");
    return [{
      type: "bar", name: data.metric_label, x: data.x_labels, y: data.z, marker: { color: colors },
      customdata: data.hover, hovertemplate: "%{customdata}<extra></extra>",
    }];
  }

  function zRange(data) {
    const values = data.z.flat().filter(v => v !== null && v !== undefined);
    return values.length ? [Math.min(...values), Math.max(...values)] : [0, 0];
  }

  /* The colour legend: the metric's name and its colour scale from the lowest to the
     highest value shown (green is better, also when lower is better). */
  function legend(box, data) {
    box.textContent = "";
    if (!data.y) return;
    element("span", { className: "hm-legend-title", textContent: data.metric_label + (data.minimize ? " (lower is better)" : "") }, box);
    element("span", { className: "hm-legend-low", textContent: fmt(data.zmin) }, box);
    const bar = element("span", { className: "hm-legend-bar" }, box);
    const stops = (data.minimize ? [...SCALE].reverse() : SCALE).map(([, color]) => color);
    bar.style.background = `linear-gradient(to right, ${stops.join(", ")})`;
    element("span", { className: "hm-legend-high", textContent: fmt(data.zmax) }, box);
  }

  function draw(chart, data) {
    const label = p => (data.params.find(q => q.name === p) || { label: p }).label;
    const layout = {
      hovermode: "closest", showlegend: false, margin: { l: 70, r: 20, t: 16, b: 50 },
      xaxis: { type: "category", title: { text: label(data.x) } },
      yaxis: data.y ? { type: "category", title: { text: label(data.y) } }
        : { title: { text: data.metric_label }, separatethousands: true, exponentformat: "none" },
    };
    if (data.y && data.best) {
      // The best combination's cell, framed: category axes place cell i on [i - 0.5, i + 0.5].
      const { x_index: i, y_index: j } = data.best;
      layout.shapes = [{ type: "rect", xref: "x", yref: "y", x0: i - 0.5, x1: i + 0.5, y0: j - 0.5, y1: j + 0.5,
        line: { color: "#17212e", width: 3 }, fillcolor: "rgba(0,0,0,0)", name: "best" }];
      layout.annotations = [{ xref: "x", yref: "y", x: i - 0.47, y: j + 0.47, xanchor: "left", yanchor: "top",
        text: "★ best", showarrow: false, font: { size: 11, color: "#17212e" }, bgcolor: "rgba(255,255,255,0.85)" }];
    }
    const traces = data.y ? heatmapTraces(data) : barTraces(data);
    const config = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
    if (window.TradelabPlot) return Plotly.react(chart, traces, window.TradelabPlot.layout(layout), Object.assign({}, window.TradelabPlot.CONFIG, config));
    return Plotly.react(chart, traces, layout, config);
  }

  function cellCombo(data, point) {
    const index = point.pointNumber;
    return Array.isArray(index) ? data.combos[index[0]][index[1]] : data.combos[index];
  }

  /* Draw the sweep's heatmap from options.url into `node`, with its choices; a click on a
     cell calls options.onOpen(params) with the combination the cell stands for. */
  function render(node, options) {
    node.textContent = "";
    const controls = element("div", { className: "hm-controls" }, node);
    const chart = element("div", { className: "chart hm-chart" }, node);
    const scale = element("div", { className: "hm-legend" }, node);
    const rule = element("p", { className: "hint hm-rule" }, node);
    const best = element("p", { className: "hint hm-best" }, node);
    let data = null;

    async function load(params) {
      node.classList.add("hm-loading");
      const response = await fetch(options.url + (params ? "?" + params : ""), {
        credentials: "same-origin", headers: { Accept: "application/json" },
      });
      const payload = await response.json();
      node.classList.remove("hm-loading");
      if (!response.ok) { rule.textContent = errorText(payload); return; }
      data = payload;
      if (data.x) [data.zmin, data.zmax] = zRange(data);
      rule.textContent = data.rule_text;
      if (!data.x) { chart.textContent = ""; best.textContent = ""; return; }
      best.textContent = data.best
        ? `${data.y ? "Framed, ★ best" : "The dark bar"}: the best combination, ${data.best_text} (${data.metric_label} ${fmt(data.best_value)}); shown here as ${fmt(data.best.value)}.`
        : `The best combination (${data.best_text || "none"}) is outside this view.`;
      buildControls(controls, data, changed => load(query(controls, data, changed)));
      await draw(chart, data);
      legend(scale, data);
      node.dataset.state = JSON.stringify({ x: data.x, y: data.y, rules: data.rules });
    }

    load("").then(() => {
      if (!chart.on) return;
      chart.on("plotly_click", event => {
        const combo = data && event.points.length ? cellCombo(data, event.points[0]) : null;
        if (combo && options.onOpen) options.onOpen(combo);
      });
    });
  }

  /* The page's heatmap, its ranked table's "Open as backtest" buttons and the error line. */
  function mount() {
    const source = document.getElementById("sweep-open");
    if (!source) return;
    const request = JSON.parse(source.textContent);
    const errors = document.getElementById("open-errors");
    const start = params => open(request, params, { errors });
    if (!request.body && errors) errors.textContent = request.refused;
    const node = document.getElementById("sweep-heatmap");
    if (node) render(node, { url: node.dataset.url, onOpen: request.body ? start : null });
    document.querySelectorAll("button.open-combo").forEach(button => {
      button.disabled = !request.body;
      if (!request.body) button.title = request.refused;
      button.addEventListener("click", async () => {
        button.disabled = true;
        try { await start(request.params[Number(button.dataset.index)]); } finally { button.disabled = false; }
      });
    });
  }

  window.SweepHeatmap = { render, open, mount };
})();
