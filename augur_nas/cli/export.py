"""``augur-nas export``: write a model, or one candidate of a search space, as an ONNX file."""

from __future__ import annotations

import os

from .._atomic import check_out_dir, check_out_file
from .._errors import SpecError
from .._format import fmt_bytes
from ..io.onnx import export_onnx
from ..lowering import check_shapes
from ..measure._calibset import export_calibration_set
from ..models import load_model, load_space
from ._command import Command
from .._batch import parse_batch


def _load(path: str, candidate, seed: int):
    """The model to export: a model file, or candidate ``I`` of a space (sample ``I`` of
    ``space.sample(I + 1, seed)``, the same candidate ``augur-nas space PATH --seed S --decode I``
    prints)."""
    if candidate is not None and candidate < 0:
        raise SpecError(f"`--candidate` must be >= 0, but got {candidate}")
    ext = os.path.splitext(path)[1].lower()
    is_factory = ":" in path and path.split(":", 1)[0].endswith(".py")
    if is_factory or ext not in (".yaml", ".yml"):
        return load_model(path)
    space = load_space(path)
    if not space.n_genes or space.size == 1:
        return space
    if candidate is None:
        raise SpecError(f"{path} is a search space with {space.size:,} candidates, not one model; choose one with "
                        f"`--candidate I` (sample I of `augur-nas space {path} --seed S`, with `--seed S`, "
                        f"default 0) ({path})")
    X = space.sample(candidate + 1, seed=seed)
    model = space.decode(X[candidate])
    check_shapes(model)  # a large space's load-time check saw a sample of its candidates, maybe not this one
    return model


def cmd_export(args) -> int:
    if args.calibration_set:
        return _export_calibration_set(args)
    if not args.path or not args.output:
        raise SpecError("export needs a model and `-o FILE` (or `--calibration-set DIR` alone)")
    check_out_file(args.output, "-o")  # a bad -o fails now, not after loading (a torch factory, a large space)


    batch = parse_batch(args.batch)
    model = _load(args.path, args.candidate, args.seed)
    info = export_onnx(model, args.output, opset=args.opset, seed=args.weights_seed, batch=batch)
    what = f"candidate {args.candidate} (seed {args.seed}) of {args.path}" if args.candidate is not None else args.path
    print(f"wrote {info['path']}: {info['nodes']} nodes, {info['weights']:,} random float32 weights "
          f"({fmt_bytes(info['bytes'], digits=1)}), opset {info['opset']}, "
          + (f"input batch {batch}, " if batch != 1 else "") + f"from {what}")
    return 0


def _export_calibration_set(args) -> int:
    if args.path or args.output or args.candidate is not None:
        raise SpecError("`--calibration-set DIR` writes the fixed calibration set; give no model, -o or --candidate")
    check_out_dir(args.calibration_set, "--calibration-set")
    m = export_calibration_set(args.calibration_set, opset=args.opset)
    print(f"wrote {len(m['networks'])} calibration networks and manifest.json into {args.calibration_set}; time each "
          f"on the target device, write model,latency_ms rows to a CSV and run `augur-nas calibrate --device BASE "
          f"--from-measurements FILE.csv -o NEW.yaml`")
    return 0


def _export_arguments(p) -> None:
    p.add_argument("path", nargs="?", default=None,
                   help="model: .yaml, .prototxt, .onnx or file.py:factory; or a space .yaml with --candidate")
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="the ONNX file to write")
    p.add_argument("--calibration-set", default=None, metavar="DIR",
                   help="write the fixed calibration set (ONNX files + manifest.json) into DIR, for `augur-nas "
                        "calibrate --from-measurements` on a device augur-nas cannot run on")
    p.add_argument("--candidate", type=int, default=None, metavar="I",
                   help="of a space: export sample I of `augur-nas space PATH --seed S`")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="sampling seed for --candidate (default 0)")
    p.add_argument("--weights-seed", type=int, default=0, metavar="N", help="seed of the random weights (default 0)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--batch", default="1", metavar="N",
                   help="images per run: the input is [N, C, H, W] (default 1; a batch-N file is for timing the "
                        "runtime at that batch, e.g. `augur-nas measure FILE.onnx --batch N`)")


EXPORT = Command("write a model (or a candidate of a space) as ONNX with random weights", _export_arguments, cmd_export)
