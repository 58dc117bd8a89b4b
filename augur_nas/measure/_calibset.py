"""The fixed calibration set, its export (ONNX files + manifest), and end-to-end latencies read from CSV.

The set is ``augur_nas/data/calibration_set.yaml``: small networks in the model language, one op
mix each. ``export_calibration_set(DIR)`` writes them as ONNX files and a ``manifest.json``
(names, files, input shapes, MACs, the op families each exercises, and the CSV format that
``augur-nas calibrate --from-measurements`` reads back). ``read_measurements(CSV)`` reads
``model,latency_ms[,batch,threads]`` rows measured anywhere (a phone's benchmark tool, trtexec) and
refuses every malformed row with a one-paragraph message naming the file, the line and the value.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from .._atomic import atomic_write
from .._errors import AugurError, MeasurementError, SpecError
from ..analysis import analyze
from ..io.onnx import export_onnx
from ..lowering import lower
from ..models import load_model, load_space_dict
from ..ops import OPS

SET_PATH = Path(__file__).resolve().parent.parent / "data" / "calibration_set.yaml"
MANIFEST = "manifest.json"
MAX_CSV_BYTES = 4 * 2**20
CSV_COLUMNS = ("model", "latency_ms")
CSV_OPTIONAL = ("batch", "threads")


class CalibrationInputError(MeasurementError):
    """A measurements file (CSV) or calibration request that cannot be used."""


@dataclass(frozen=True)
class CalibrationNetwork:
    name: str
    model: object
    spec: dict


@dataclass(frozen=True)
class Measurement:
    """One end-to-end latency measured on the target device."""

    name: str  # as in the manifest, or the path given
    model: object
    latency_ms: float
    batch: int
    threads: int | None
    line: int


def calibration_set() -> list:
    """The fixed calibration networks, in the order of the file."""
    with open(SET_PATH, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    out = []
    for spec in doc["networks"]:
        out.append(CalibrationNetwork(spec["name"], load_space_dict(spec, source=f"{SET_PATH}:{spec['name']}"), spec))
    return out


def families_of(model) -> list:
    """The op families a network exercises (manifest information)."""
    t = lower(model, np.zeros((1, model.n_genes), dtype=np.int64))
    r = t.rows
    fams = set()
    for s, op in enumerate(t.ops):
        if not r["mask"][s, 0]:
            continue
        if op == "conv":
            g, cin, k = int(r["groups"][s, 0]), int(r["in_c"][s, 0]), int(r["k"][s, 0])
            per = max(cin // max(g, 1), 1)
            fams.add("conv_stem" if per < 8 else "conv_1x1" if k == per else "conv_grouped" if g > 1 else "conv_kxk")
        elif op in ("dwconv", "fc", "lrn", "concat", "mul"):
            fams.add({"mul": "squeeze_excite"}.get(op, op))
        elif OPS[op].table_type == "pool":
            fams.add("pool")
    return sorted(fams)


def export_calibration_set(folder: str, opset: int = 17) -> dict:
    """Write every calibration network as ``DIR/NAME.onnx`` and ``DIR/manifest.json``; returns the manifest."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise SpecError(f"cannot write the calibration set into {folder}: it is a file, not a folder")
    parent = os.path.dirname(os.path.abspath(folder))
    if not os.path.isdir(parent):
        raise SpecError(f"cannot write the calibration set into {folder}: the folder {parent} does not exist")
    os.makedirs(folder, exist_ok=True)
    rows = []
    for net in calibration_set():
        path = os.path.join(folder, f"{net.name}.onnx")
        export_onnx(net.model, path, opset=opset)
        tot = analyze(net.model)["totals"]
        inp = net.spec["input"]
        rows.append({"model": net.name, "file": f"{net.name}.onnx",
                     "input_shape": [1, inp["channels"], inp["resolution"], inp["resolution"]],
                     "macs": int(tot["macs"]), "params": int(tot["params"]), "families": families_of(net.model)})
    manifest = {"format": 1, "what": "augur-nas calibration set: random float32 weights, input `input`, NCHW",
                "measure": "time each file end to end on the target device (median of many runs, batch 1), then "
                           "write a CSV with the columns model,latency_ms (optional: batch,threads) and run "
                           "`augur-nas calibrate --device BASE --from-measurements FILE.csv -o NEW.yaml`",
                "csv_columns": list(CSV_COLUMNS), "csv_optional_columns": list(CSV_OPTIONAL), "networks": rows}
    atomic_write(os.path.join(folder, MANIFEST), json.dumps(manifest, indent=2) + "\n")
    return manifest


# --------------------------------------------------------------------------------------------- CSV


def _bad(path, line, msg) -> CalibrationInputError:
    at = f", line {line}" if line else ""
    return CalibrationInputError(f"{path}{at}: {msg} (expected a CSV with the header `model,latency_ms` and optional "
                                 f"`batch,threads` columns, one row per network measured end to end on the target "
                                 f"device; models named as in the calibration set's manifest or given as paths) "
                                 f"({path}{at})")


def _read_text(path: str) -> str:
    try:
        if os.path.getsize(path) > MAX_CSV_BYTES:
            raise CalibrationInputError(f"{path} is larger than {MAX_CSV_BYTES:,} bytes; is it a measurements CSV? "
                                        f"({path})")
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise CalibrationInputError(f"cannot read the measurements {path}: {exc.strerror or exc} ({path})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _bad(path, None, f"not UTF-8 text (byte {exc.start})") from None


def read_measurements(path: str, base_dir: str | None = None) -> list:
    """``Measurement`` rows of a CSV; every problem is a ``CalibrationInputError`` naming the line."""
    text = _read_text(path)
    rows = list(csv.reader(text.splitlines()))
    rows = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if not rows:
        raise _bad(path, None, "the file is empty")
    line0, header = rows[0]
    cols = [c.strip().lower() for c in header]
    missing = [c for c in CSV_COLUMNS if c not in cols]
    if missing:
        raise _bad(path, line0, f"the header {','.join(header)!r} lacks the column(s) {', '.join(missing)}")
    unknown = [c for c in cols if c not in CSV_COLUMNS + CSV_OPTIONAL]
    if unknown:
        raise _bad(path, line0, f"unknown column(s) {', '.join(unknown)}")
    if len(set(cols)) != len(cols):
        raise _bad(path, line0, "a column appears twice in the header")
    known = {n.name: n for n in calibration_set()}
    base_dir = base_dir if base_dir is not None else os.path.dirname(os.path.abspath(path))
    out, seen = [], {}
    for line, r in rows[1:]:
        if len(r) != len(cols):
            raise _bad(path, line, f"{len(r)} values where the header has {len(cols)} columns")
        v = dict(zip(cols, (c.strip() for c in r)))
        name = v["model"]
        lat = _positive(path, line, "latency_ms", v["latency_ms"], integer=False)
        batch = _positive(path, line, "batch", v["batch"], integer=True) if v.get("batch") else 1
        threads = _positive(path, line, "threads", v["threads"], integer=True) if v.get("threads") else None
        key = (name, batch, threads)
        if key in seen:
            raise _bad(path, line, f"`{name}` (batch {batch}) is measured twice, on lines {seen[key]} and {line}; "
                                   f"give one latency per network (the median of your runs)")
        seen[key] = line
        out.append(Measurement(name, _model(path, line, name, known, base_dir), lat, batch, threads, line))
    if not out:
        raise _bad(path, None, "the file has a header but no measurements")
    return out


def _positive(path, line, col, text, integer):
    try:
        x = float(text)
    except ValueError:
        raise _bad(path, line, f"`{col}` is {text!r}, not a number") from None
    if math.isnan(x) or math.isinf(x):
        raise _bad(path, line, f"`{col}` is {text}; give a finite number")
    if x <= 0:
        raise _bad(path, line, f"`{col}` is {text}; it must be positive")
    if integer:
        if x != int(x):
            raise _bad(path, line, f"`{col}` is {text}; give a whole number")
        return int(x)
    return x


def _model(path, line, name, known, base_dir):
    if not name:
        raise _bad(path, line, "the `model` column is empty")
    stem = name[:-5] if name.endswith(".onnx") and os.path.basename(name) == name else name
    if stem in known:
        return known[stem].model
    candidates = [name] if os.path.isabs(name) else [os.path.join(base_dir, name), name]
    for p in candidates:
        if os.path.isfile(p.split(":")[0]):
            try:
                return load_model(p)
            except AugurError as exc:
                raise _bad(path, line, f"cannot read the model {p}: {exc}") from None
    raise _bad(path, line, f"unknown model `{name}`: neither a network of the calibration set ({', '.join(sorted(known)[:4])}"
                           f", ... `augur-nas export --calibration-set DIR` lists them) nor a model file")
