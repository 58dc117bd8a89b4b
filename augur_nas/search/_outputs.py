"""The files of a search: trials.csv, pareto.csv, pareto.json, arch-NNN.yaml, pareto.png, pareto.html.

Every file is written atomically (a temporary file in the same folder, then ``os.replace``), so
a reader (or an interrupted run) never sees half a file.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os

import numpy as np

from .._atomic import atomic_write
from .._format import json_default as _json_default
from .._format import plain_number as _num
from .._imports import optional
from ._units import format_limit

COST_KEYS = ("latency_ms", "memory_mb", "params", "macs")
HTML_MAX_POINTS = 20000


def remove_stale(out_dir: str) -> None:
    """Remove the front files of an earlier run in ``out_dir`` (only the names this module writes)."""
    for pat in ("pareto.csv", "pareto.json", "pareto.png", "pareto.html", "arch-[0-9][0-9][0-9]*.yaml"):
        for p in glob.glob(os.path.join(out_dir, pat)):
            try:
                os.unlink(p)
            except OSError:
                pass


# ------------------------------------------------------------------------------------------ helpers


def active_genes(space, X: np.ndarray) -> np.ndarray:
    """``[N, G]`` bool: which genes matter for each (canonical) encoding."""
    X = np.asarray(X, dtype=np.int64)
    N, G = X.shape
    act = X != 0
    for g, info in enumerate(space.genes):
        if info.size < 2:
            continue
        probe = X.copy()
        probe[:, g] = 1
        act[:, g] |= space.canonicalize(probe)[:, g] == 1
    return act


def choices_of(space, x, active=None) -> dict:
    """``{gene name: chosen option}`` of the genes that matter for encoding ``x``."""
    x = np.asarray(x, dtype=np.int64)
    if active is None:
        active = active_genes(space, x[None, :])[0]
    return {g.name: _plain(g.options[int(x[i])]) for i, g in enumerate(space.genes) if active[i]}


def _plain(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v


def objective_label(meta) -> str:
    obj = meta["objective"]
    if obj["name"] in ("macs", "params"):
        return f"{obj['name']} (capacity proxy, maximized)"
    return f"{obj['name']} (maximized)"


# ------------------------------------------------------------------------------------------ writers


def write_trials_csv(path: str, space, table: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    names = space.gene_names
    w.writerow(["trial", "state", "feasible", "violation", *COST_KEYS, "objective", "on_front", "encoding", *names])
    X = table["X"]
    for i in range(len(X)):
        obj = table["objective"][i]
        w.writerow([int(table["number"][i]), table["state"][i], int(bool(table["feasible"][i])),
                    _csv_num(table["violation"][i]),
                    *(_csv_num(table[k][i]) for k in COST_KEYS),
                    _csv_num(obj), int(bool(table["on_front"][i])), " ".join(map(str, X[i].tolist())),
                    *(_plain(g.options[int(X[i, j])]) for j, g in enumerate(space.genes))])
    return atomic_write(path, buf.getvalue())


def _csv_num(v) -> str:
    n = _num(v)
    if n is None:
        return ""
    if isinstance(n, float):
        return f"{n:.6g}" if abs(n) < 1e6 else f"{n:.10g}"
    return str(n)


def front_records(space, front: dict) -> list:
    """One dict per front member (sorted by latency): id, trial, encoding, choices, costs, objective."""
    X = front["X"]
    act = active_genes(space, X) if len(X) else np.zeros((0, space.n_genes), dtype=bool)
    recs = []
    for i in range(len(X)):
        rid = f"arch-{i:03d}"
        recs.append({
            "id": rid,
            "file": f"{rid}.yaml",
            "trial": int(front["number"][i]),
            "encoding": X[i].tolist(),
            "choices": choices_of(space, X[i], act[i]),
            "latency_ms": _num(front["latency_ms"][i]),
            "memory_mb": _num(front["memory_mb"][i]),
            "params": _num(front["params"][i]),
            "macs": _num(front["macs"][i]),
            "objective": _num(front["objective"][i]),
        })
    return recs


def write_pareto_csv(path: str, space, recs: list) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    names = space.gene_names
    w.writerow(["id", "trial", *COST_KEYS, "objective", "file", "encoding", *names])
    for r in recs:
        x = r["encoding"]
        w.writerow([r["id"], r["trial"], *(_csv_num(r[k]) for k in COST_KEYS), _csv_num(r["objective"]), r["file"],
                    " ".join(map(str, x)),
                    *(_plain(g.options[x[j]]) if g.name in r["choices"] else "" for j, g in enumerate(space.genes))])
    return atomic_write(path, buf.getvalue())


def write_pareto_json(path: str, meta: dict, recs: list) -> str:
    doc = dict(meta)
    doc["front"] = recs
    return atomic_write(path, json.dumps(doc, indent=2, default=_json_default, allow_nan=False) + "\n")


def write_arch_yamls(out_dir: str, space, recs: list) -> list:
    paths = []
    for r in recs:
        header = (f"# {r['id']}: Pareto-front member of {space.name} (trial {r['trial']}), written by augur-nas search\n"
                  f"# encoding: {' '.join(map(str, r['encoding']))}\n"
                  f"# predicted: latency {r['latency_ms']:.3f} ms, memory {r['memory_mb']:.1f} MB, "
                  f"params {r['params']}, MACs {r['macs']}, objective {r['objective']}\n")
        paths.append(atomic_write(os.path.join(out_dir, r["file"]), header + space.decode_yaml(np.array(r["encoding"]))))
    return paths


# ------------------------------------------------------------------------------------------ figures


def _axis_values(table, key):
    return np.asarray(table[key], dtype=np.float64)


def write_png(path: str, meta: dict, table: dict, front: dict) -> str:
    FigureCanvasAgg = optional("matplotlib.backends.backend_agg", "the front plot").FigureCanvasAgg
    Figure = optional("matplotlib.figure", "the front plot").Figure
    blended_transform_factory = optional("matplotlib.transforms", "the front plot").blended_transform_factory

    limits = meta["constraints"]
    obj_name = meta["objective"]["name"]
    extra = [k for k in limits if k != "latency_ms" and k != obj_name]
    ncols = 1 + len(extra)
    fig = Figure(figsize=(6.4 * ncols, 4.8), dpi=110)
    FigureCanvasAgg(fig)
    feas = np.asarray(table["feasible"], dtype=bool)
    lat = _axis_values(table, "latency_ms")
    obj = _axis_values(table, "objective")
    scale, unit = _scale(obj_name, np.concatenate([obj[np.isfinite(obj)], np.asarray(front["objective"], float)]))

    ax = fig.add_subplot(1, ncols, 1)
    inf_ok = ~feas & np.isfinite(obj)
    ax.scatter(lat[inf_ok], obj[inf_ok] / scale, s=9, marker="x", c="#b0b0b0", linewidths=0.7,
               label=f"infeasible ({int((~feas).sum())})", zorder=1)
    no_obj = ~feas & ~np.isfinite(obj)
    if no_obj.any():
        tr = blended_transform_factory(ax.transData, ax.transAxes)
        ax.scatter(lat[no_obj], np.full(no_obj.sum(), 0.01), s=12, marker="|", c="#b0b0b0", transform=tr,
                   label=f"infeasible, objective not evaluated ({int(no_obj.sum())})", zorder=1)
    ax.scatter(lat[feas], obj[feas] / scale, s=10, c="#4477aa", alpha=0.6, label=f"feasible ({int(feas.sum())})", zorder=2)
    fl = np.asarray(front["latency_ms"], float)
    fo = np.asarray(front["objective"], float) / scale
    if len(fl):
        ax.step(fl, fo, where="post", c="#cc3311", lw=1.2, zorder=3)
        ax.scatter(fl, fo, s=28, c="#cc3311", edgecolors="black", linewidths=0.5, label=f"Pareto front ({len(fl)})", zorder=4)
        if len(fl) <= 15:
            for i, (a, b) in enumerate(zip(fl, fo)):
                ax.annotate(f"{i:03d}", (a, b), textcoords="offset points", xytext=(4, -9), fontsize=7)
    if "latency_ms" in limits:
        ax.axvline(limits["latency_ms"], c="#cc3311", ls="--", lw=1, label=f"latency <= {format_limit('latency_ms', limits['latency_ms'])}")
    if obj_name in limits:
        ax.axhline(limits[obj_name] / scale, c="#ee7733", ls="--", lw=1,
                   label=f"{obj_name} <= {format_limit(obj_name, limits[obj_name])}")
    ax.set_xlabel(f"predicted latency (ms) on {meta['device']}, batch {meta['batch']}")
    ax.set_ylabel(f"{obj_name}{unit} ({'capacity proxy' if obj_name in ('macs', 'params') else 'objective'}, higher is better)")
    if meta.get("exact"):  # --sampler exact: the front is solved, the other points are a random background
        e = meta["exact"]
        ax.set_title(f"{meta['space']} on {meta['device']}: exact front, {e['pareto_optimal_points']} Pareto-optimal "
                     f"({e['front_written']} shown) of {float(meta['space_size']):.3g}", fontsize=10)
    else:
        ax.set_title(f"{meta['space']} on {meta['device']}: {meta['sampler']}, {meta['n_trials']} trials", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")

    for j, key in enumerate(extra):
        axj = fig.add_subplot(1, ncols, 2 + j)
        v = _axis_values(table, key)
        sc, un = _scale(key, v)
        axj.scatter(lat[~feas], v[~feas] / sc, s=9, marker="x", c="#b0b0b0", linewidths=0.7, label="infeasible")
        axj.scatter(lat[feas], v[feas] / sc, s=10, c="#4477aa", alpha=0.6, label="feasible")
        if len(fl):
            axj.scatter(fl, np.asarray(front[key], float) / sc, s=28, c="#cc3311", edgecolors="black", linewidths=0.5,
                        label="Pareto front")
        axj.axhline(limits[key] / sc, c="#cc3311", ls="--", lw=1, label=f"{key} <= {format_limit(key, limits[key])}")
        if "latency_ms" in limits:
            axj.axvline(limits["latency_ms"], c="#cc3311", ls="--", lw=1)
        axj.set_xlabel("predicted latency (ms)")
        axj.set_ylabel(f"{key}{un}")
        axj.grid(alpha=0.3)
        axj.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write(path, buf.getvalue())


def _scale(key, values):
    if key in ("macs", "params"):
        m = np.nanmax(values) if len(values) and np.isfinite(values).any() else 0
        if m >= 1e9:
            return 1e9, " (G)"
        if m >= 1e6:
            return 1e6, " (M)"
        if m >= 1e3:
            return 1e3, " (K)"
    return 1.0, ""


def write_html(path: str, meta: dict, table: dict, front: dict, recs: list) -> str:
    n = len(table["X"])
    idx = np.arange(n)
    if n > HTML_MAX_POINTS:
        rng = np.random.default_rng(0)
        idx = np.sort(rng.choice(n, HTML_MAX_POINTS, replace=False))
    pts = {
        "trial": [int(v) for v in np.asarray(table["number"])[idx]],
        "feasible": [bool(v) for v in np.asarray(table["feasible"])[idx]],
        **{k: [_num(v) for v in np.asarray(table[k], float)[idx]] for k in (*COST_KEYS, "objective")},
    }
    data = {"meta": meta, "points": pts, "shown": int(len(idx)), "total": int(n), "front": recs,
            "objective_label": objective_label(meta)}
    blob = json.dumps(data, default=_json_default, allow_nan=False).replace("</", "<\\/")
    title = f"{meta['space']} on {meta['device']}: Pareto front"
    html = _HTML.replace("__TITLE__", _esc(title)).replace("__DATA__", blob)
    return atomic_write(path, html)


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


_HTML = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font:13px/1.4 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:16px;color:#222}
h1{font-size:17px;margin:0 0 4px}#sub{color:#555;margin-bottom:8px}
#controls label{margin-right:14px}svg{border:1px solid #ddd;background:#fff}
.pt{cursor:pointer}#tip{position:absolute;pointer-events:none;background:#fffbe6;border:1px solid #aaa;
padding:4px 7px;font-size:12px;display:none;white-space:pre}
table{border-collapse:collapse;margin-top:10px;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}tr.sel{background:#ffe9e0}
#detail{margin-top:10px;font-size:12px}#detail td{text-align:left}
</style></head><body>
<h1 id="title"></h1><div id="sub"></div>
<div id="controls"><label>x <select id="xs"></select></label><label>y <select id="ys"></select></label>
<label><input type="checkbox" id="showinf" checked> infeasible</label>
<label><input type="checkbox" id="logx"> log x</label><label><input type="checkbox" id="logy"> log y</label></div>
<svg id="plot" width="900" height="520" xmlns="http://www.w3.org/2000/svg"></svg>
<div id="tip"></div>
<div id="detail"></div>
<table id="ftab"></table>
<script>
const D = __DATA__;
const NS = "http://www.w3.org/2000/svg";
const M = D.meta;
// a built-in objective (macs, params) is one of the cost columns: listed once, under its own name
const OBJ = ["macs","params"].includes(M.objective.name) ? M.objective.name : "objective";
const KEYS = ["latency_ms","memory_mb","params","macs"].concat(OBJ === "objective" ? ["objective"] : []);
const LABEL = {latency_ms:"latency (ms)",memory_mb:"memory (MB)",params:"params",macs:"MACs",objective:D.objective_label};
if (OBJ !== "objective") LABEL[OBJ] = D.objective_label;
document.getElementById("title").textContent = M.space + " on " + M.device + ": Pareto front (" + M.sampler + ")";
let lim = Object.entries(M.constraints).map(([k,v]) => k + " <= " + fmt(k,v)).join(", ") || "no constraints";
document.getElementById("sub").textContent = M.n_trials + " trials, " + M.n_feasible + " feasible, front of " +
  D.front.length + "; constraints: " + lim + "; objective: " + D.objective_label +
  (D.shown < D.total ? "; showing " + D.shown + " of " + D.total + " points" : "");
for (const id of ["xs","ys"]) { const s = document.getElementById(id);
  for (const k of KEYS) { const o = document.createElement("option"); o.value = k; o.textContent = LABEL[k]; s.appendChild(o); } }
document.getElementById("xs").value = "latency_ms"; document.getElementById("ys").value = OBJ;
function fmt(k, v) { if (v === null || v === undefined) return "-";
  if (k === "latency_ms") return v.toFixed(2) + " ms"; if (k === "memory_mb") return v.toFixed(1) + " MB";
  const a = Math.abs(v); if (a >= 1e9) return (v/1e9).toFixed(3) + "G"; if (a >= 1e6) return (v/1e6).toFixed(3) + "M";
  if (a >= 1e3) return (v/1e3).toFixed(2) + "K"; return (+v.toPrecision(6)).toString(); }
// axis ticks: round steps (1, 2, 5 x 10^k) inside the range, printed with no more digits than they need
function niceTicks(a, b) { const raw = (b - a) / 5, p = Math.pow(10, Math.floor(Math.log10(raw))), m = raw / p;
  const step = (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p, out = [];
  for (let v = Math.ceil(a / step) * step; v <= b + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out; }
function fmtTick(k, v) { const t = x => (+x.toPrecision(4)).toString();
  if (k === "latency_ms") return t(v) + " ms"; if (k === "memory_mb") return t(v) + " MB"; const a = Math.abs(v);
  if (a >= 1e9) return t(v/1e9) + "G"; if (a >= 1e6) return t(v/1e6) + "M"; if (a >= 1e3) return t(v/1e3) + "K"; return t(v); }
function el(tag, attrs, parent) { const e = document.createElementNS(NS, tag);
  for (const [k,v] of Object.entries(attrs)) e.setAttribute(k, v); if (parent) parent.appendChild(e); return e; }
const tip = document.getElementById("tip");
function showTip(ev, text) { tip.textContent = text; tip.style.display = "block";
  tip.style.left = (ev.pageX + 12) + "px"; tip.style.top = (ev.pageY + 12) + "px"; }
function hideTip() { tip.style.display = "none"; }
let selected = -1;
function draw() {
  const svg = document.getElementById("plot"); while (svg.firstChild) svg.removeChild(svg.firstChild);
  const xk = document.getElementById("xs").value, yk = document.getElementById("ys").value;
  const lx = document.getElementById("logx").checked, ly = document.getElementById("logy").checked;
  const showInf = document.getElementById("showinf").checked;
  const W = 900, H = 520, L = 80, R = 50, T = 20, B = 50;
  const P = D.points, n = P.trial.length, xs = [], ys = [];
  const ok = v => v !== null && (!lx || v > 0);
  for (let i = 0; i < n; i++) { if (!P.feasible[i] && !showInf) continue;
    if (P[xk][i] !== null) xs.push(P[xk][i]); if (P[yk][i] !== null) ys.push(P[yk][i]); }
  for (const f of D.front) { xs.push(f[xk]); ys.push(f[yk]); }
  for (const [k,v] of Object.entries(M.constraints)) { if (k === xk) xs.push(v); if (k === yk) ys.push(v); }
  const tx = v => lx ? Math.log10(Math.max(v, 1e-12)) : v, ty = v => ly ? Math.log10(Math.max(v, 1e-12)) : v;
  let x0 = Math.min(...xs.map(tx)), x1 = Math.max(...xs.map(tx)), y0 = Math.min(...ys.map(ty)), y1 = Math.max(...ys.map(ty));
  if (!isFinite(x0)) { x0 = 0; x1 = 1; } if (!isFinite(y0)) { y0 = 0; y1 = 1; }
  if (x1 === x0) { x1 += 1; x0 -= 1; } if (y1 === y0) { y1 += 1; y0 -= 1; }
  const px = (x1 - x0) * 0.04, py = (y1 - y0) * 0.05; x0 -= px; x1 += px; y0 -= py; y1 += py;
  const sx = v => L + (tx(v) - x0) / (x1 - x0) * (W - L - R), sy = v => H - B - (ty(v) - y0) / (y1 - y0) * (H - T - B);
  const g = el("g", {}, svg);
  el("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#333"}, g);
  el("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#333"}, g);
  for (const vx of niceTicks(x0, x1)) { const X = L + (vx - x0) / (x1 - x0) * (W - L - R);
    el("line", {x1: X, y1: T, x2: X, y2: H - B, stroke: "#eee"}, g);
    el("text", {x: X, y: H - B + 16, "text-anchor": "middle", "font-size": 11}, g).textContent = fmtTick(xk, lx ? Math.pow(10, vx) : vx); }
  for (const vy of niceTicks(y0, y1)) { const Y = H - B - (vy - y0) / (y1 - y0) * (H - T - B);
    el("line", {x1: L, y1: Y, x2: W - R, y2: Y, stroke: "#eee"}, g);
    el("text", {x: L - 6, y: Y + 4, "text-anchor": "end", "font-size": 11}, g).textContent = fmtTick(yk, ly ? Math.pow(10, vy) : vy); }
  el("text", {x: (L + W - R) / 2, y: H - 10, "text-anchor": "middle", "font-size": 12}, g).textContent = LABEL[xk];
  const yl = el("text", {x: 16, y: (T + H - B) / 2, "text-anchor": "middle", "font-size": 12,
    transform: "rotate(-90 16 " + ((T + H - B) / 2) + ")"}, g); yl.textContent = LABEL[yk];
  for (const [k,v] of Object.entries(M.constraints)) {
    if (k === xk) { el("line", {x1: sx(v), y1: T, x2: sx(v), y2: H - B, stroke: "#cc3311", "stroke-dasharray": "6 4"}, g);
      const right = sx(v) > (L + W - R) / 2;  // a limit near the right edge is labelled on its left
      el("text", {x: sx(v) + (right ? -4 : 4), y: T + 12, "font-size": 11, fill: "#cc3311", "text-anchor": right ? "end" : "start"},
        g).textContent = k + " <= " + fmtTick(k, v); }
    if (k === yk) { el("line", {x1: L, y1: sy(v), x2: W - R, y2: sy(v), stroke: "#cc3311", "stroke-dasharray": "6 4"}, g);
      el("text", {x: W - R - 4, y: sy(v) - 4, "font-size": 11, fill: "#cc3311", "text-anchor": "end"}, g).textContent = k + " <= " + fmt(k, v); }
  }
  const pg = el("g", {}, svg);
  for (let i = 0; i < n; i++) {
    const f = P.feasible[i]; if (!f && !showInf) continue;
    const xv = P[xk][i], yv = P[yk][i]; if (!ok(xv) || yv === null || (ly && yv <= 0)) continue;
    const c = f ? el("circle", {cx: sx(xv), cy: sy(yv), r: 2.6, fill: "#4477aa", "fill-opacity": 0.55, class: "pt"}, pg)
                : el("path", {d: "M" + (sx(xv)-2.5) + " " + (sy(yv)-2.5) + "l5 5m0 -5l-5 5", stroke: "#aaa", class: "pt"}, pg);
    c.addEventListener("mousemove", ev => showTip(ev, "trial " + P.trial[i] + (f ? " (feasible)" : " (infeasible)") + "\n" +
      KEYS.map(k => LABEL[k] + ": " + fmt(k, P[k][i])).join("\n")));
    c.addEventListener("mouseleave", hideTip);
  }
  const fr = D.front.filter(f => ok(f[xk]) && f[yk] !== null).slice().sort((a, b) => a[xk] - b[xk]);
  if (xk === "latency_ms" && yk === OBJ && fr.length) {
    let d = ""; fr.forEach((f, j) => { d += (j ? "H" + sx(f[xk]) + "V" + sy(f[yk]) : "M" + sx(f[xk]) + " " + sy(f[yk])); });
    el("path", {d: d, fill: "none", stroke: "#cc3311", "stroke-width": 1.5}, pg);
  }
  D.front.forEach((f, j) => { if (!ok(f[xk]) || f[yk] === null) return;
    const c = el("circle", {cx: sx(f[xk]), cy: sy(f[yk]), r: j === selected ? 6 : 4.5, fill: "#cc3311", stroke: "#000",
      "stroke-width": j === selected ? 2 : 0.7, class: "pt"}, pg);
    c.addEventListener("mousemove", ev => showTip(ev, f.id + " (trial " + f.trial + ", Pareto front)\n" +
      KEYS.map(k => LABEL[k] + ": " + fmt(k, f[k])).join("\n") + "\nclick for its choices"));
    c.addEventListener("mouseleave", hideTip);
    c.addEventListener("click", () => select(j));
  });
  const lg = el("g", {}, svg); let ly0 = T + 8;
  for (const [lab, col] of [["feasible", "#4477aa"], ["infeasible", "#aaa"], ["Pareto front", "#cc3311"]]) {
    el("circle", {cx: W - R - 110, cy: ly0, r: 4, fill: col}, lg);
    el("text", {x: W - R - 100, y: ly0 + 4, "font-size": 11}, lg).textContent = lab; ly0 += 16; }
}
function select(j) { selected = j; draw(); const f = D.front[j];
  let h = "<b>" + f.id + "</b> (trial " + f.trial + ", file " + f.file + "), encoding " + f.encoding.join(" ") +
    "<table><tr><th>gene</th><th>choice</th></tr>";
  for (const [k, v] of Object.entries(f.choices)) h += "<tr><td>" + esc(k) + "</td><td>" + esc(String(v)) + "</td></tr>";
  document.getElementById("detail").innerHTML = h + "</table>";
  document.querySelectorAll("#ftab tr").forEach((r, i) => r.className = (i - 1 === j) ? "sel" : ""); }
function esc(s) { return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"); }
function table() { const t = document.getElementById("ftab");
  let h = "<tr><th>id</th><th>trial</th>" + KEYS.map(k => "<th>" + esc(LABEL[k]) + "</th>").join("") + "</tr>";
  D.front.forEach((f, j) => { h += "<tr data-j='" + j + "'><td>" + f.id + "</td><td>" + f.trial + "</td>" +
    KEYS.map(k => "<td>" + fmt(k, f[k]) + "</td>").join("") + "</tr>"; });
  t.innerHTML = h; t.querySelectorAll("tr[data-j]").forEach(r => r.addEventListener("click", () => select(+r.dataset.j))); }
for (const id of ["xs","ys","showinf","logx","logy"]) document.getElementById(id).addEventListener("change", draw);
table(); draw();
</script></body></html>
"""
