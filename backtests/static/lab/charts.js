/* Small SVG charts for the lab: line/area series, candlesticks with trade markers, heatmaps.
   Written here rather than pulled from a CDN: nothing may download at run time. */
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const PAD = { left: 64, right: 14, top: 10, bottom: 24 };

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const key in attrs) node.setAttribute(key, attrs[key]);
    if (parent) parent.appendChild(node);
    return node;
  }

  function frame(container, height) {
    container.innerHTML = "";
    const width = Math.max(container.clientWidth, 320);
    const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, height: height }, container);
    return { svg, width, height, x0: PAD.left, x1: width - PAD.right, y0: height - PAD.bottom, y1: PAD.top };
  }

  function niceTicks(lo, hi, count) {
    if (!(hi > lo)) { hi = lo + 1; }
    const raw = (hi - lo) / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => s >= raw) || raw;
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) ticks.push(v);
    return ticks;
  }

  function fmt(v) {
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(2) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    if (a >= 100) return v.toFixed(0);
    return v.toFixed(2);
  }

  function axes(f, xs, lo, hi, yFormat) {
    const sx = t => f.x0 + (xs.length > 1 ? (t - xs[0]) / (xs[xs.length - 1] - xs[0]) : 0.5) * (f.x1 - f.x0);
    const sy = v => f.y0 - (hi > lo ? (v - lo) / (hi - lo) : 0.5) * (f.y0 - f.y1);
    for (const tick of niceTicks(lo, hi, 4)) {
      el("line", { x1: f.x0, x2: f.x1, y1: sy(tick), y2: sy(tick), stroke: "#edf0f4" }, f.svg);
      el("text", { x: f.x0 - 6, y: sy(tick) + 4, "text-anchor": "end", "font-size": 11, fill: "#66768a" }, f.svg)
        .textContent = (yFormat || fmt)(tick);
    }
    const n = Math.min(6, xs.length);
    for (let i = 0; i < n; i++) {
      const t = xs[Math.round(i * (xs.length - 1) / Math.max(n - 1, 1))];
      el("text", { x: sx(t), y: f.height - 6, "text-anchor": "middle", "font-size": 11, fill: "#66768a" }, f.svg)
        .textContent = new Date(t).toISOString().slice(0, 10);
    }
    return { sx, sy };
  }

  function hover(container, f, xs, sx, label) {
    const tip = document.createElement("div");
    tip.className = "tip"; tip.style.display = "none";
    container.appendChild(tip);
    const guide = el("line", { y1: f.y1, y2: f.y0, stroke: "#9aa8b8", "stroke-dasharray": "3 3", visibility: "hidden" }, f.svg);
    f.svg.addEventListener("mousemove", event => {
      const box = f.svg.getBoundingClientRect();
      const px = (event.clientX - box.left) * (f.width / box.width);
      const t = xs[0] + (px - f.x0) / (f.x1 - f.x0) * (xs[xs.length - 1] - xs[0]);
      let lo = 0, hi = xs.length - 1;
      while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (xs[mid] < t) lo = mid; else hi = mid; }
      const i = Math.abs(xs[lo] - t) < Math.abs(xs[hi] - t) ? lo : hi;
      guide.setAttribute("x1", sx(xs[i])); guide.setAttribute("x2", sx(xs[i]));
      guide.setAttribute("visibility", "visible");
      tip.textContent = new Date(xs[i]).toISOString().replace("T", " ").slice(0, 16) + "  " + label(i);
      tip.style.display = "block";
      tip.style.left = Math.min(event.clientX - box.left + 12, box.width - tip.offsetWidth - 4) + "px";
      tip.style.top = "4px";
    });
    f.svg.addEventListener("mouseleave", () => { tip.style.display = "none"; guide.setAttribute("visibility", "hidden"); });
  }

  /* series: [{values, color, fill}]; xs: epoch millis. */
  function line(container, xs, series, opts) {
    opts = opts || {};
    const f = frame(container, opts.height || 220);
    if (!xs.length) { el("text", { x: f.width / 2, y: f.height / 2, "text-anchor": "middle", fill: "#66768a" }, f.svg).textContent = "No data"; return; }
    let lo = Infinity, hi = -Infinity;
    for (const s of series) for (const v of s.values) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (opts.zeroTop) hi = Math.max(hi, 0);
    const { sx, sy } = axes(f, xs, lo, hi, opts.yFormat);
    for (const s of series) {
      const pts = s.values.map((v, i) => `${sx(xs[i]).toFixed(1)},${sy(v).toFixed(1)}`);
      if (s.fill) {
        const base = opts.zeroTop ? sy(0) : f.y0;
        el("path", { d: `M${sx(xs[0])},${base}L${pts.join("L")}L${sx(xs[xs.length - 1])},${base}Z`, fill: s.fill, stroke: "none" }, f.svg);
      }
      el("polyline", { points: pts.join(" "), fill: "none", stroke: s.color, "stroke-width": 1.5 }, f.svg);
    }
    hover(container, f, xs, sx, i => series.map(s => (opts.yFormat || fmt)(s.values[i])).join(" / "));
  }

  /* candles: {ts, open, high, low, close}; trades: [{direction, entry_time, entry_price, exit_time, exit_price, pnl}] */
  function candles(container, c, trades, opts) {
    opts = opts || {};
    const f = frame(container, opts.height || 320);
    const xs = c.ts.map(t => Date.parse(t));
    if (!xs.length) return;
    let lo = Math.min(...c.low), hi = Math.max(...c.high);
    const padY = (hi - lo) * 0.04; lo -= padY; hi += padY;
    const { sx, sy } = axes(f, xs, lo, hi);
    const w = Math.max(1, (f.x1 - f.x0) / xs.length * 0.7);
    for (let i = 0; i < xs.length; i++) {
      const up = c.close[i] >= c.open[i], color = up ? "#1a9b5b" : "#d2413a", x = sx(xs[i]);
      el("line", { x1: x, x2: x, y1: sy(c.high[i]), y2: sy(c.low[i]), stroke: color }, f.svg);
      const top = sy(Math.max(c.open[i], c.close[i])), bottom = sy(Math.min(c.open[i], c.close[i]));
      el("rect", { x: x - w / 2, y: top, width: w, height: Math.max(bottom - top, 0.8), fill: color }, f.svg);
    }
    const first = xs[0], last = xs[xs.length - 1];
    for (const t of trades || []) {
      const entry = Date.parse(t.entry_time);
      if (entry >= first && entry <= last) {
        const x = sx(entry), y = sy(t.entry_price), long = t.direction === "long";
        const d = long ? `M${x},${y + 2}l-5,9h10z` : `M${x},${y - 2}l-5,-9h10z`;
        el("path", { d, fill: long ? "#2f6fd0" : "#8a3fd1" }, f.svg);
      }
      if (t.exit_time && t.exit_price !== null) {
        const exit = Date.parse(t.exit_time);
        if (exit >= first && exit <= last) {
          el("circle", { cx: sx(exit), cy: sy(t.exit_price), r: 3.5, fill: t.pnl >= 0 ? "#1a9b5b" : "#d2413a", stroke: "#fff" }, f.svg);
        }
      }
    }
    hover(container, f, xs, sx, i => `O ${fmt(c.open[i])} H ${fmt(c.high[i])} L ${fmt(c.low[i])} C ${fmt(c.close[i])}`);
  }

  /* rows: [{params, metrics}]; axes: [xParam, yParam] */
  function heatmap(container, rows, axesNames, metric, best) {
    const [xName, yName] = axesNames;
    const f = frame(container, 360);
    if (!xName) { el("text", { x: f.width / 2, y: 40, "text-anchor": "middle", fill: "#66768a" }, f.svg).textContent = "Vary at least one parameter to see a heatmap"; return; }
    const xv = [...new Set(rows.map(r => r.params[xName]))].sort((a, b) => a - b);
    const yv = yName ? [...new Set(rows.map(r => r.params[yName]))].sort((a, b) => a - b) : [null];
    const cells = new Map();
    for (const r of rows) {
      const v = r.metrics[metric];
      if (v === null || v === undefined) continue;
      const key = r.params[xName] + "|" + (yName ? r.params[yName] : null);
      const cell = cells.get(key) || { sum: 0, n: 0 };
      cell.sum += v; cell.n += 1; cells.set(key, cell);  // other parameters are averaged over
    }
    const values = [...cells.values()].map(c => c.sum / c.n);
    const lo = Math.min(...values), hi = Math.max(...values);
    const cw = (f.x1 - f.x0) / xv.length, ch = (f.y0 - f.y1) / yv.length;
    const color = v => {
      const t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
      const r = Math.round(210 - 170 * t), g = Math.round(65 + 110 * t), b = Math.round(58 + 40 * t);
      return `rgb(${r},${g},${b})`;
    };
    xv.forEach((x, i) => yv.forEach((y, j) => {
      const cell = cells.get(x + "|" + y);
      const rx = f.x0 + i * cw, ry = f.y0 - (j + 1) * ch;
      const rect = el("rect", { x: rx + 1, y: ry + 1, width: cw - 2, height: ch - 2, fill: cell ? color(cell.sum / cell.n) : "#eceff3" }, f.svg);
      const isBest = best && best[xName] === x && (!yName || best[yName] === y);
      if (isBest) { rect.setAttribute("stroke", "#17212e"); rect.setAttribute("stroke-width", 3); }
      if (cell && cw > 34 && ch > 16) {
        el("text", { x: rx + cw / 2, y: ry + ch / 2 + 4, "text-anchor": "middle", "font-size": 11, fill: "#fff" }, f.svg).textContent = fmt(cell.sum / cell.n);
      }
      el("title", {}, rect).textContent = `${xName}=${x}${yName ? `, ${yName}=${y}` : ""}: ${cell ? (cell.sum / cell.n).toFixed(4) : "no value"}`;
    }));
    xv.forEach((x, i) => { el("text", { x: f.x0 + (i + 0.5) * cw, y: f.height - 6, "text-anchor": "middle", "font-size": 11, fill: "#66768a" }, f.svg).textContent = x; });
    yv.forEach((y, j) => { el("text", { x: f.x0 - 6, y: f.y0 - (j + 0.5) * ch + 4, "text-anchor": "end", "font-size": 11, fill: "#66768a" }, f.svg).textContent = y === null ? "" : y; });
    el("text", { x: f.x1, y: f.height - 6 - 12, "text-anchor": "end", "font-size": 11, fill: "#17212e" }, f.svg).textContent = xName + " →";
    if (yName) el("text", { x: 4, y: f.y1 + 10, "font-size": 11, fill: "#17212e" }, f.svg).textContent = yName + " ↑";
  }

  window.Charts = { line, candles, heatmap };
})();
