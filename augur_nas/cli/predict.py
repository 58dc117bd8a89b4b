"""``augur-nas predict`` and ``augur-nas devices``: the cost oracle on the command line."""

from __future__ import annotations

import numpy as np

from .._format import fmt_count, print_json, table
from .._ram import ram_mb, ram_warning
from ..fingerprint import summary
from ..models import InputShape, load_model
from ..oracle import Oracle
from ..profile import list_profiles, load_profile
from ._args import Once, input_shape
from ._command import Command
from .._batch import parse_batches
from .._batch import batch_curve
from .._batch import BatchPoint, plot_curve
from .._atomic import check_out_file


def predict(path, device, batch: int = 1, input_shape=None) -> dict:
    """The JSON object of ``augur-nas predict``."""
    model = load_model(path, input_shape=input_shape)
    oracle = Oracle(model, device, batch=batch)
    x = np.zeros((1, model.n_genes), dtype=np.int64)
    res = oracle.evaluate(x)
    layers = oracle.explain(x)
    lat = float(res["latency_ms"][0])
    info = model.input_info
    return {
        "model": model.name,
        "device": oracle.device,
        "runtime": oracle.profile.runtime,
        "batch": batch,
        "input_shape": list(info.shape),
        "input_from": info.source,
        "ram_mb": ram_mb(oracle.profile),
        "warning": ram_warning(res["memory_mb"], oracle.profile, model.name),
        "latency_ms": lat,
        "throughput_ips": batch * 1000.0 / lat if lat > 0 else None,
        "memory_mb": float(res["memory_mb"][0]),
        "macs": float(res["macs"][0]),
        "params": int(res["params"][0]),
        "latency_by_kind_ms": {k.split(".", 1)[1]: float(v[0]) for k, v in res.items() if k.startswith("latency_ms.")},
        "provenance": oracle.profile.provenance.get("method", ""),
        "threads": oracle.profile.threads,  # the intra-op thread count the profile describes (None: not said)
        "layers": layers,
    }


def batch_sweep(path, device, batches, input_shape=None) -> dict:
    """The JSON object of ``augur-nas predict --batch 1,2,4``: latency and throughput per batch."""

    model = load_model(path, input_shape=input_shape)
    oracle = Oracle(model, device)
    pts = batch_curve(oracle, np.zeros((1, model.n_genes), dtype=np.int64), batches)
    info = model.input_info
    return {"model": model.name, "device": oracle.device, "runtime": oracle.profile.runtime,
            "input_shape": list(info.shape), "input_from": info.source,
            "provenance": oracle.profile.provenance.get("method", ""), "threads": oracle.profile.threads,
            "batches": [p._asdict() for p in pts]}


def cmd_predict(args) -> int:

    batches = parse_batches(args.batch)
    if len(batches) > 1 or args.plot:
        return _cmd_sweep(args, batches)
    res = predict(args.path, args.device, batches[0], args.input_shape)
    if args.json:
        print_json(res)
        return 0
    rows = []
    for layer in res["layers"]:
        g = layer["gemm"]
        gemm = (f"{g['n']}x{g['k']}x{g['m']}" + (f" g{g['groups']}" if g["groups"] > 1 else "")) if g else ""
        rows.append([layer["name"], layer["type"], layer["op"], gemm, f"{layer['ms']:.3f}", f"{100 * layer['share']:.1f}%"])
    print(f"{res['model']} on {res['device']} ({res['runtime']}), batch {res['batch']}, float32, "
          f"input shape {input_line(res)}")
    table(["layer", "type", "op", "GEMM n x k x m", "ms", "share"], rows)
    print()
    table(["op kind", "ms"], [[k, f"{v:.3f}"] for k, v in sorted(res["latency_by_kind_ms"].items(), key=lambda kv: -kv[1])])
    print()
    print(f"latency: {res['latency_ms']:.2f} ms   throughput: {res['throughput_ips']:.1f} images/s   "
          f"memory: {res['memory_mb']:.1f} MB   MACs: {fmt_count(res['macs'])}   params: {res['params']:,}")
    if res["provenance"]:
        print(f"profile: {res['provenance']}"
              + (f"; it describes {res['threads']} intra-op thread(s)" if res.get("threads") else ""))
    if res["warning"]:
        print(res["warning"])
    return 0


def _cmd_sweep(args, batches) -> int:

    if args.plot:

        check_out_file(args.plot, "--plot")
    res = batch_sweep(args.path, args.device, batches, args.input_shape)
    note = extrapolation_note(load_profile(args.device), batches)
    if note:
        res["batch_note"] = note
    if args.plot:
        pts = [BatchPoint(**p) for p in res["batches"]]
        plot_curve({res["device"]: pts}, args.plot, f"{res['model']} on {res['device']} (predicted)")
    if args.json:
        print_json(res)
        return 0
    print(f"{res['model']} on {res['device']} ({res['runtime']}), float32, input shape {input_line(res)}"
          + (f", {res['threads']} intra-op thread(s)" if res.get("threads") else ""))
    table(["batch", "latency ms", "ms / image", "images/s", "memory MB"],
          [[p["batch"], f"{p['latency_ms']:.2f}", f"{p['latency_ms'] / p['batch']:.2f}", f"{p['throughput_ips']:.1f}",
            f"{p['memory_mb']:.1f}"] for p in res["batches"]])
    print("latency: of the whole batch; images/s = batch x 1000 / latency ms (batches run back to back)")
    if note:
        print(f"note: {note}")
    if res["provenance"]:
        print(f"profile: {res['provenance']}")
    if args.plot:
        print(f"wrote {args.plot}")
    return 0


def extrapolation_note(profile, batches) -> str | None:
    """What to say when a measured profile without a batch model (``latency.scaling``) prices
    batches it was not measured at: the layer rules extrapolate them (a GPU's launches, for one,
    do not grow with the batch as its kernels do)."""
    measured_at = int((profile.runtime_settings or {}).get("batch", 1))
    if not profile.runtime_settings or profile.latency.scaling is not None or all(b == measured_at for b in batches):
        return None
    return (f"`{profile.name}` was measured at batch {measured_at} and has no batch model (latency.scaling): the "
            f"other batches are extrapolated by the layer rules (docs/profiles.md, \"Batch\"), not measured")


def input_line(res: dict) -> str:
    """``1x3x32x32 (from the file)``: the input shape used and where it came from."""
    return InputShape(tuple(res["input_shape"]), res["input_from"]).describe()


def devices() -> list:
    """The JSON list of ``augur-nas devices``."""
    out = []
    for name in list_profiles():
        p = load_profile(name)
        out.append({
            "name": p.name,
            "description": p.description,
            "runtime": p.runtime,
            "hardware": p.hardware,
            "provenance": p.provenance,
            "fit": {k: v for k, v in p.fit.items() if k in ("method", "parameters", "max_abs_error_pct", "layerwise_sync_ms")},
            "fingerprint": p.fingerprint,
            "threads": p.threads,
            "measured_fit": _measured_fit(p.fit),
        })
    return out


def _measured_fit(fit: dict) -> dict | None:
    """A measured profile's fit quality in the columns of the published ones: the largest |error| over
    its calibration networks (latency) and its memory networks; no leave-one-out figures exist."""
    nets = ((fit.get("calibration_networks") or {}).get("networks") or {})
    if not nets:
        return None
    errs = [abs(v["error_pct"]) for v in nets.values() if isinstance(v, dict) and "error_pct" in v]
    mem = fit.get("memory") or {}
    return {"forward": max(errs) if errs else None, "forward_n": len(errs),
            "memory_p90": mem.get("p90_abs_error_pct"), "memory_n": mem.get("n")}


def cmd_devices(args) -> int:

    res = devices()
    if args.json:
        print_json(res)
        return 0
    rows = []
    for d in res:
        e = d["fit"].get("max_abs_error_pct", {})

        def f(k, e=e):
            return f"{e[k]:.1f}%" if k in e else ""

        mf = d.get("measured_fit")
        if not e and mf:  # a measured profile: its calibration networks, no leave-one-out
            rows.append([d["name"], d["runtime"], d["hardware"].get("processor", ""),
                         f"{mf['forward']:.1f}%*" if mf["forward"] is not None else "", "n/a",
                         f"{mf['memory_p90']:.1f}%*" if mf.get("memory_p90") is not None else "", "n/a"])
            continue
        rows.append([d["name"], d["runtime"], d["hardware"].get("processor", ""), f("forward"),
                     f("forward_leave_one_model_out"), f("memory"), f("memory_leave_one_model_out")])
    table(["device", "runtime", "processor", "fwd err", "fwd err LOO", "mem err", "mem err LOO"], rows)
    print()
    print("errors: largest |predicted/published - 1| over the calibration networks, in-sample and leave-one-model-out")
    if any(d.get("measured_fit") and not d["fit"].get("max_abs_error_pct") for d in res):
        print("*: a measured profile: largest |error| over its measured calibration networks (latency) and p90 "
              "|error| over its memory networks; no leave-one-out figures (n/a)")

    for d in res:
        print(f"{d['name']}: {d['provenance'].get('method', '')}")
        print(f"  fingerprint: {summary(d['fingerprint'])}")
    return 0


def _predict_arguments(p) -> None:
    p.add_argument("path", help="model file: .yaml, .prototxt, .onnx, file.py:factory, or a NAS-Bench-201 string")
    p.add_argument("--device", action=Once, required=True, metavar="NAME|FILE",
                   help="a shipped device profile (see `augur-nas devices`) or a profile YAML file")
    p.add_argument("--batch", default="1", metavar="N[,N..]",
                   help="images per forward pass (default 1); several (1,2,4,8,16,32) print latency and throughput "
                        "per batch")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="draw latency and throughput against the batch sizes of --batch (needs matplotlib)")
    add_input_shape(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def add_input_shape(p) -> None:
    p.add_argument("--input-shape", "--input", dest="input_shape", type=input_shape, default=None, metavar="1xCxHxW",
                   help="the input to price the model at, e.g. 1x3x32x32 or 3x32x32 (default: the model file's; "
                        "a PyTorch factory's own (module, shape), else 224x224; needed for ONNX with dynamic axes)")


def _devices_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object")


PREDICT = Command("predicted latency and memory of a model on a device", _predict_arguments, cmd_predict)
DEVICES = Command("the shipped device profiles, their provenance and fit quality", _devices_arguments, cmd_devices)
