"""The ``augur-nas`` command line.

Every user error is an ``AugurError``: printed as one paragraph on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ._errors import AugurError

EXIT_USAGE = 2


def _fmt_count(v: float) -> str:
    v = float(v)
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.2f}{unit}"
    return f"{v:.0f}"


def _fmt_bytes(v: float) -> str:
    v = float(v)
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(v) >= div:
            return f"{v / div:.2f} {unit}"
    return f"{v:.0f} B"


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=_json_default)
    sys.stdout.write("\n")


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def _table(headers, rows, out=None) -> None:
    out = out or sys.stdout
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    line = "  ".join(f"{h:<{w}}" for h, w in zip(headers, widths))
    out.write(line + "\n" + "  ".join("-" * w for w in widths) + "\n")
    for r in rows:
        out.write("  ".join(f"{str(c):<{w}}" if i == 0 else f"{str(c):>{w}}" for i, (c, w) in enumerate(zip(r, widths))) + "\n")


# --------------------------------------------------------------------------------------------- analyze


def cmd_analyze(args) -> int:
    from .analysis import analyze
    from .models import load_model

    model = load_model(args.path)
    res = analyze(model)
    if args.json:
        _print_json(res)
        return 0
    print(f"{res['model']}: input {'x'.join(map(str, res['input']))}, float32, batch 1")
    rows = []
    for layer in res["layers"]:
        g = layer["gemm"]
        gemm = f"{g['n']}x{g['k']}x{g['m']}" + (f" g{g['groups']}" if g["groups"] > 1 else "") if g else ""
        rows.append([layer["name"], layer["type"], "x".join(map(str, layer["out_shape"])), _fmt_count(layer["macs"]),
                     _fmt_count(layer["params"]), gemm])
    _table(["layer", "type", "output", "MACs/ops", "params", "GEMM n x k x m"], rows)
    print()
    _table(["type", "count", "MACs/ops", "params"],
           [[t, v["count"], _fmt_count(v["macs"]), _fmt_count(v["params"])] for t, v in res["by_type"].items()])
    t = res["totals"]
    print()
    print(f"MACs (conv+fc): {_fmt_count(t['macs'])}   all ops: {_fmt_count(t['ops'])}   params: {t['params']:,}")
    print(f"weights: {_fmt_bytes(t['weights_bytes'])}   activations: {_fmt_bytes(t['activation_bytes'])}   "
          f"workspace: {_fmt_bytes(t['workspace_bytes'])}   peak memory (with reuse): {_fmt_bytes(t['peak_memory_bytes'])}")
    return 0


# --------------------------------------------------------------------------------------------- space


def cmd_space(args) -> int:
    from .analysis import analyze_batch
    from .space import load_space

    space = load_space(args.path)
    X = space.sample(args.samples, seed=args.seed)
    tot = analyze_batch(space, X)
    samples = []
    for i in range(len(X)):
        samples.append({"encoding": X[i].tolist(),
                        "choices": {g.name: g.options[X[i, j]] for j, g in enumerate(space.genes)},
                        "macs": float(tot["macs"][i]), "params": int(tot["params"][i])})
    res = {"space": space.name, "size": space.size, "genes": [{"name": g.name, "options": list(g.options)} for g in space.genes],
           "samples": samples}
    if args.json:
        _print_json(res)
        return 0
    print(f"{space.name}: {space.n_genes} genes, {space.size:,} architectures ({float(space.size):.3g})")
    _table(["gene", "options"], [[g.name, ", ".join(map(str, g.options))] for g in space.genes])
    print()
    _table(["sample", "MACs", "params", "encoding"],
           [[i, _fmt_count(s["macs"]), _fmt_count(s["params"]), " ".join(map(str, s["encoding"]))] for i, s in enumerate(samples)])
    if args.decode is not None:
        print()
        print(space.decode_yaml(X[min(args.decode, len(X) - 1)]))
    return 0


# --------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="augur-nas", description="A vectorized cost oracle for hardware-aware NAS.")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("analyze", help="per-layer MACs, params, GEMM sizes and memory of a model")
    a.add_argument("path", help="model file: .yaml, .prototxt, .onnx or file.py:factory")
    a.add_argument("--json", action="store_true", help="print one JSON object")
    a.set_defaults(fn=cmd_analyze)

    s = sub.add_parser("space", help="genes, size and sampled candidates of a search space")
    s.add_argument("path")
    s.add_argument("--json", action="store_true")
    s.add_argument("--samples", type=int, default=5)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--decode", type=int, default=None, metavar="I", help="also print sample I as a model YAML")
    s.set_defaults(fn=cmd_space)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return p


_EXTRA_COMMANDS: list = []


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except AugurError as exc:
        sys.stderr.write(f"augur-nas {args.command}: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"augur-nas {args.command}: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0


from ._cli_predict import register as _register_predict; _EXTRA_COMMANDS.append(_register_predict)  # noqa: E402,E702
from ._cli_export import register as _register_export; _EXTRA_COMMANDS.append(_register_export)  # noqa: E402,E702
from ._cli_measure import register as _register_measure; _EXTRA_COMMANDS.append(_register_measure)  # noqa: E402,E702
from ._cli_search import register as _register_search; _EXTRA_COMMANDS.append(_register_search)  # noqa: E402,E702
from ._cli_calibrate import register as _register_calibrate; _EXTRA_COMMANDS.append(_register_calibrate)  # noqa: E402,E702


if __name__ == "__main__":
    sys.exit(main())
