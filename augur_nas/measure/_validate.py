"""``augur-nas validate``: measured and predicted side by side.

Networks are sampled from spaces (``space.sample(n, seed)``) and/or given as model files. Every
one is measured with the ``measure`` protocol (latency, and peak memory in a child process) and
predicted by the oracle on the device profile: with the residual when the profile holds one,
without it (the layer sum), and by the MACs log-log baseline (its coefficients fitted by
``fit-residual`` on the residual's training networks; without a residual, fitted on the
validation networks themselves and marked in sample).

The measurement's own noise (``|median(first half) - median(second half)| / median`` of its
rounds) is the floor below which no prediction can be judged: the figures are reported over the
networks measured within ``max_noise`` and over all of them, with the number left out.
Architectures the residual was trained on are recognised by their hash and never scored.
"""

from __future__ import annotations

import copy
import tempfile

import numpy as np

from .._errors import MeasurementError
from .._imports import optional
from ..models import load_model
from ..oracle import Oracle
from ._measure import measure_networks
from ._memory import GPU_MEMORY, on_cuda
from ._metrics import accuracy, macs_loglog_fit, macs_loglog_predict
from ._profiling import anchor_speed, memory_contention, profile_anchors
from ._residual_fit import arch_hash
from ._runners import prepare


def _predict(space, X, profile, batch):
    o = Oracle(space, profile, batch=batch)
    r = o.evaluate(X, breakdown=False)
    return r["latency_ms"], r["memory_mb"], r["macs"]


def validate(profile, spaces=(), models=(), samples: int = 50, seed: int = 0, settings=None, rounds: int = 10,
             round_s: float = 0.05, spread_s: float = 0.0, memory: bool = True, max_noise: float = 0.05,
             progress=None, memory_jobs: int = 1, retries: int = 1, max_wait_s: float = 300.0) -> dict:
    """Measure and predict; returns the report (``summary`` and one row per network)."""
    say = progress or (lambda m: None)
    base_profile = copy.copy(profile)
    base_profile.residual = None
    has_res = profile.residual is not None
    trained = set(profile.residual.trained.get("architectures", [])) if has_res else set()
    rows, items = _predicted_rows(spaces, models, samples, seed, profile, base_profile, settings.batch)
    if not rows:
        raise MeasurementError("validate needs networks: --space SPACE --samples N, or model files")
    overlap = [r["label"] for r in rows if r["hash"] in trained]
    anchors_ref, anchor_items = profile_anchors(profile)
    with tempfile.TemporaryDirectory(prefix="augur-validate-") as d:
        say(f"exporting {len(items)} networks" + (f" and {len(anchor_items)} speed anchors" if anchor_items else ""))
        nets = prepare(items + anchor_items, d)
        # labels may have been made unique by prepare
        for r, n in zip(rows, nets):
            r["label"] = n.label
        res = measure_networks(nets, settings, rounds=rounds, round_s=round_s, warmup_s=0.1, spread_s=spread_s,
                               memory=memory, progress=say, seed=seed, memory_jobs=memory_jobs,
                               retry_noise=max_noise, retries=retries, max_wait_s=max_wait_s,
                               references={n.label: anchors_ref[n.label] for n in nets[len(rows):]})
    anchor_res = res[len(rows):]
    res = res[:len(rows)]
    speed = _machine_speed(anchor_res, anchors_ref, res)
    _add_measurements(rows, res, trained)
    scored = [r for r in rows if not r["in_training"]]
    macs_note = "fitted by fit-residual on the residual's training networks"
    if has_res and "macs_loglog" in profile.residual.trained:
        ml = profile.residual.trained["macs_loglog"]
        coef = (ml["a"], ml["b"])
    else:
        coef = macs_loglog_fit([r["macs"] for r in scored], [r["measured_ms"] for r in scored])
        macs_note = "fitted on these validation networks (in sample: no residual training set available)"
    for r in rows:
        r["macs_baseline_ms"] = float(macs_loglog_predict(coef, [r["macs"]])[0])
    summary = summarize(scored, max_noise, has_res)
    if on_cuda(settings) and "memory" in summary:
        summary["memory"]["measured"] = GPU_MEMORY
    summary["measured"] = "speed-normalized" if speed is not None else "raw"
    if speed is not None:
        summary["machine_speed"] = speed
        # the same predictions against the latencies as timed, not brought to the profile's speed
        raw = summarize([dict(r, measured_ms=r["measured_raw_ms"]) for r in scored], max_noise, has_res)
        summary["raw"] = {"clean": raw.get("clean"), "all": raw.get("all"), "by_group": raw.get("by_group"),
                          "note": "predictions against the latencies as timed (each batch at the machine's speed "
                                  "then), not normalized by the speed anchors"}
    summary["macs_baseline"] = {"a": coef[0], "b": coef[1], "note": macs_note}
    summary["excluded_in_training"] = overlap
    summary["settings"] = settings.to_dict()
    summary["profile"] = profile.name
    summary["residual"] = bool(has_res)
    if has_res:
        t = profile.residual.trained
        summary["residual_training"] = {k: t.get(k) for k in ("spaces", "samples_per_space", "seed", "networks", "used")}
    return {"summary": summary, "networks": rows}


def _predicted_rows(spaces, models, samples: int, seed: int, profile, base_profile, batch: int):
    """One row per network (``samples`` candidates of each space, then the model files) with its
    predictions (``layer_sum_ms`` without the residual), and the ``(label, model)`` items to measure."""
    rows, items = [], []
    has_res = profile.residual is not None
    for path, space in spaces:
        X = space.sample(samples, seed=seed)
        lat, mem, macs = _predict(space, X, profile, batch)
        lat0 = _predict(space, X, base_profile, batch)[0] if has_res else lat
        for i, x in enumerate(X):
            model = space.decode(x)
            lab = f"{space.name}[{i}]"
            items.append((lab, model))
            rows.append({"label": lab, "group": space.name, "source": f"{path} sample {i} (seed {seed})",
                         "predicted_ms": float(lat[i]), "layer_sum_ms": float(lat0[i]), "predicted_mb": float(mem[i]),
                         "macs": float(macs[i]), "hash": arch_hash(model)})
    for path in models:
        model = load_model(path)
        x = np.zeros((1, model.n_genes), dtype=np.int64)
        lat, mem, macs = _predict(model, x, profile, batch)
        lat0 = _predict(model, x, base_profile, batch)[0] if has_res else lat
        lab = str(path).rsplit("/", 1)[-1]
        items.append((lab, model))
        rows.append({"label": lab, "group": "zoo" if "zoo" in str(path) else "models", "source": str(path),
                     "predicted_ms": float(lat[0]), "layer_sum_ms": float(lat0[0]), "predicted_mb": float(mem[0]),
                     "macs": float(macs[0]), "hash": arch_hash(model)})
    return rows, items


def _machine_speed(anchor_res, anchors_ref, res):
    """How fast the machine runs now against when the profile was built (from the speed anchors),
    or None for a profile without anchors."""
    sp = anchor_speed({a["label"]: a["latency"]["median_ms"] for a in anchor_res}, anchors_ref)
    if sp is None:
        return None
    ratio, ratios = sp
    busy = memory_contention(ratios, ratio)
    batches = sorted({m["latency"]["speed"] for m in res if m["latency"].get("speed") == m["latency"].get("speed")})
    return {"ratio_now_to_profile": ratio,
             "anchors": {k: round(v, 4) for k, v in ratios.items()},
             "batches": [round(float(b), 4) for b in batches],
             "note": "median over the speed anchors of (latency now / latency when the profile was built); "
                     "1.2 means the machine runs 20% slower than when the profile was measured. The anchors "
                     "are timed in every batch of rounds; `batches` are the speeds of the batches",
            **({"warning": busy} if busy else {})}


def _add_measurements(rows, res, trained) -> None:
    """The measured latency (speed-normalized where the anchors allow) and memory of each row."""
    for r, m in zip(rows, res):
        norm = m["latency"].get("normalized_ms")
        r["measured_raw_ms"] = m["latency"]["median_ms"]
        r["measured_ms"] = norm if norm else m["latency"]["median_ms"]
        r["speed"] = m["latency"].get("speed")
        r["raw_noise"] = m["latency"].get("raw_noise")
        r["noise"] = m["latency"]["noise"]
        r["spread_ms"] = m["latency"]["spread_ms"]
        r["rounds"] = m["latency"]["rounds"]
        r["attempts"] = m["latency"].get("attempts", 1)
        r["contended_rounds"] = m["latency"].get("contended_rounds", 0)
        r["waited_s"] = m["latency"].get("waited_s", 0.0)
        r["iters_per_round"] = m["latency"]["iters_per_round"]
        mm = m.get("memory") or {}
        r["measured_mb"] = mm.get("peak_rss_mb")
        r["model_peak_mb"] = mm.get("model_peak_mb")
        r["in_training"] = r["hash"] in trained


def summarize(rows, max_noise: float, has_res: bool) -> dict:
    if not rows:
        return {"networks": 0, "max_noise": max_noise, "n_clean": 0, "excluded_noisy": 0,
                "noise_floor": {}, "clean": {}, "all": {}, "note": "no network left to score"}
    noise = np.array([r["noise"] if r["noise"] == r["noise"] else 1.0 for r in rows])
    clean = noise <= max_noise
    meas = np.array([r["measured_ms"] for r in rows])
    out = {"networks": len(rows), "max_noise": max_noise, "n_clean": int(clean.sum()),
           "excluded_noisy": int((~clean).sum()),
           "noise_floor": {"median_pct": float(np.median(noise) * 100), "p90_pct": float(np.quantile(noise, 0.9) * 100),
                           "within_2pct": float(np.mean(noise <= 0.02)), "within_5pct": float(np.mean(clean))}}
    preds = {"with_residual": "predicted_ms", "layer_sum": "layer_sum_ms", "macs_loglog": "macs_baseline_ms"}
    if not has_res:
        preds = {"layer_sum": "predicted_ms", "macs_loglog": "macs_baseline_ms"}
    for tag, sel in (("clean", clean), ("all", np.ones(len(rows), dtype=bool))):
        out[tag] = {name: accuracy(np.array([r[key] for r in rows])[sel], meas[sel]) for name, key in preds.items()}
    groups = sorted({r["group"] for r in rows})
    out["by_group"] = {}
    for g in groups:
        sel = np.array([r["group"] == g for r in rows]) & clean
        out["by_group"][g] = {"networks": int(sum(r["group"] == g for r in rows)), "clean": int(sel.sum()),
                              **{name: accuracy(np.array([r[key] for r in rows])[sel], meas[sel])["within_10pct"]
                                 if sel.any() else None for name, key in preds.items()}}
    mm = [(r["predicted_mb"], r["measured_mb"]) for r in rows if r.get("measured_mb")]
    if mm:
        p, m = np.array(mm).T
        e = p / m - 1
        out["memory"] = {"networks": int(len(m)), "within_15pct": float(np.mean(np.abs(e) <= 0.15)),
                         "within_10pct": float(np.mean(np.abs(e) <= 0.10)),
                         "median_abs_error_pct": float(np.median(np.abs(e)) * 100),
                         "max_abs_error_pct": float(np.max(np.abs(e)) * 100),
                         "measured": "peak RSS (VmHWM) of a child process: load + 3 runs"}
    return out


def plot(report: dict, path: str, title: str = "") -> None:
    optional("matplotlib", "the validation plot").use("Agg")
    plt = optional("matplotlib.pyplot", "the validation plot")

    rows = report["networks"]
    maxn = report["summary"]["max_noise"]
    fig, ax = plt.subplots(figsize=(6.4, 6.0))
    meas = np.array([r["measured_ms"] for r in rows])
    lo, hi = meas.min() * 0.7, meas.max() * 1.4
    xs = np.geomspace(lo, hi, 50)
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="0.85", label="±10%")
    ax.plot(xs, xs, color="0.4", lw=0.8)
    groups = sorted({r["group"] for r in rows})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for gi, g in enumerate(groups):
        sel = [r for r in rows if r["group"] == g and not r.get("in_training")]
        for clean in (True, False):
            pts = [r for r in sel if (r["noise"] <= maxn) == clean]
            if not pts:
                continue
            ax.scatter([r["measured_ms"] for r in pts], [r["predicted_ms"] for r in pts], s=16,
                       color=colors[gi % len(colors)] if clean else "none",
                       edgecolors=colors[gi % len(colors)], linewidths=0.8,
                       label=f"{g}" + ("" if clean else f" (noise > {maxn:.0%})"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency (ms, median of rounds)")
    ax.set_ylabel("predicted latency (ms)")
    s = report["summary"]
    key = "with_residual" if s.get("residual") else "layer_sum"
    fig_title = title
    if not fig_title and s.get("networks") and s["clean"].get(key, {}).get("n"):
        fig_title = (f"{s['profile']}: {s['clean'][key]['within_10pct']:.0%} within ±10% "
                     f"({s['clean'][key]['n']} networks, noise ≤ {maxn:.0%})")
    ax.set_title(fig_title or s.get("profile", ""), fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
