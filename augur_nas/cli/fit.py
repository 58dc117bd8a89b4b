"""``augur-nas fit``: which device runs a model (or how much of a space), every profile side by side."""

from __future__ import annotations

import re

from .._format import print_json, table
from .._imports import available, optional
from ._args import Once, nonneg_int, positive_int
from ._command import Command
import sys
from .predict import add_input_shape
from ..search._units import format_limit
from ..planner._fit import DEFAULT_SAMPLES
from ..planner import fit
from .._batch import DEFAULT_BATCHES


def _fmt(v, spec: str = ".1f", none: str = "-") -> str:
    return none if v is None else format(v, spec)


def _limits_line(rep) -> str:

    parts = [f"{k.split('_')[0]} <= {format_limit(k, v)}" for k, v in rep.limits.items() if k != "throughput_ips"]
    if "throughput_ips" in rep.limits:
        parts.append(f"throughput >= {rep.limits['throughput_ips']:g} images/s")
    return ", ".join(parts) or "no limits (the device's RAM only)"


def _print_model(rep) -> None:
    rows = []
    for r in rep.rows:
        rows.append([r.device, _fmt(r.threads, "d"), r.provenance, f"{r.latency_ms:.2f}", f"{r.memory_mb:.1f}",
                     _fmt(r.ram_mb, ".0f"), _fmt(r.best_batch, "d"), _fmt(r.best_latency_ms, ".1f"),
                     f"{r.best_throughput_ips:.1f}", "yes" if r.fits else "NO",
                     _fmt(r.margin_pct, "+.1f") + ("%" if r.margin_pct is not None else ""), r.limiting or ""])
    table(["device", "threads", "provenance", "latency ms", "memory MB", "RAM MB", "best batch", "batch ms",
           "images/s", "fits", "margin", "limited by"], rows)


def _print_space(rep) -> None:
    rows = []
    for r in rep.rows:
        over = ", ".join(f"{k} {v}" for k, v in r.over.items() if v) or "-"
        rows.append([r.device, _fmt(r.threads, "d"), r.provenance, f"{r.n_fit}/{r.samples}",
                     f"{100 * r.fit_fraction:.1f}%", f"{r.latency_ms_min:.2f}", f"{r.latency_ms_median:.2f}",
                     f"{r.memory_mb_median:.1f}", f"{r.best_throughput_ips_max:.1f}", over])
    table(["device", "threads", "provenance", "fit", "share", "min ms", "median ms", "median MB",
           "best images/s", "over the limit"], rows)


def _import_lightgbm_lean() -> None:
    """Import LightGBM without its optional scikit-learn / pandas / dask bridges (only its core
    ``Booster`` prices a profile's residual): that import is most of a cold `fit`'s second. Done
    in the CLI's own short-lived process only, never in a user's Python session."""

    if "lightgbm" in sys.modules:
        return
    blocked = [m for m in ("sklearn", "pandas", "dask") if m not in sys.modules]
    for m in blocked:
        sys.modules[m] = None  # an ImportError inside lightgbm's optional imports
    try:
        if available("lightgbm"):  # not installed: a profile with a residual says so when it is loaded
            optional("lightgbm", "a profile's residual")
    finally:
        for m in blocked:
            sys.modules.pop(m, None)


def cmd_fit(args) -> int:
    _import_lightgbm_lean()
    rep = fit(args.path, latency_ms=args.latency, memory_mb=args.memory, throughput_ips=args.throughput,
              devices=args.devices, threads=args.threads, batches=args.batch, samples=args.samples,
              seed=args.seed, input_shape=args.input_shape)
    if args.json:
        print_json(rep.to_dict())
        return 0
    what = (f"{rep.name}: a sample of {rep.rows[0].samples if rep.rows else 0} candidates (seed {args.seed})"
            if rep.kind == "space" else rep.name)
    print(f"{what}; {_limits_line(rep)}; batch sizes tried {','.join(map(str, rep.batches))}"
          + (f"; profiles of {rep.threads} thread(s)" if rep.threads else ""))
    (_print_space if rep.kind == "space" else _print_model)(rep)
    for n in rep.notes:
        print(f"note: {n}")
    if rep.kind == "model":
        print("latency/memory: one image; best batch: the highest throughput whose batch latency and memory stay "
              "within the limits and the device's RAM; margin: the smallest headroom over the limits "
              "(negative: does not fit); threads: the intra-op threads the profile describes (-: not said)")
    else:
        print("fit: candidates of the sample within every limit (latency and memory of one image, the device's RAM, "
              "throughput at their best batch); threads: the intra-op threads the profile describes (-: not said)")
    return 0


def _fit_arguments(p) -> None:

    p.add_argument("path", help="a model (.yaml, .prototxt, .onnx, file.py:factory) or a search space .yaml")
    p.add_argument("--latency", metavar="LIMIT", help="limit on the latency of one image and of a batch, e.g. 50ms")
    p.add_argument("--memory", metavar="LIMIT", help="limit on predicted memory, e.g. 300MB or 1GB (1 MB = 2^20 bytes)")
    p.add_argument("--throughput", metavar="RATE", help="images per second needed, e.g. 100/s (at the best batch)")
    p.add_argument("--devices", action=Once, default="all", metavar="all|A,B",
                   help="the profiles to compare: all shipped ones (default) or names / profile files, comma-separated")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="use each device's profile of N intra-op threads (a profile of the same machine and runtime)")
    p.add_argument("--batch", default=",".join(map(str, DEFAULT_BATCHES)), metavar="B1,B2,..",
                   help="batch sizes tried for the best throughput (default 1,2,4,8,16,32; 1 is always tried)")
    p.add_argument("--samples", type=positive_int, default=DEFAULT_SAMPLES, metavar="N",
                   help=f"of a space: candidates sampled (default {DEFAULT_SAMPLES})")
    p.add_argument("--seed", type=nonneg_int, default=0, metavar="S", help="of a space: sampling seed (default 0)")
    add_input_shape(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    # `--throughput -3/s` reaches the strict parser (and is refused there in one paragraph)
    if hasattr(p, "_negative_number_matcher"):
        p._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[A-Za-z/]*$")


FIT = Command("which device runs a model within latency / memory / throughput limits (or how much of a space)",
              _fit_arguments, cmd_fit)
