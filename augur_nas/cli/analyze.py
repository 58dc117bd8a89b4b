"""``augur-nas analyze`` and ``augur-nas space``: what a model or a search space contains."""

from __future__ import annotations

from .._format import fmt_bytes, fmt_count, print_json, table
from ._command import Command


def cmd_analyze(args) -> int:
    from ..analysis import analyze
    from ..models import load_model

    model = load_model(args.path)
    res = analyze(model)
    if args.json:
        print_json(res)
        return 0
    print(f"{res['model']}: input {'x'.join(map(str, res['input']))}, float32, batch 1")
    rows = []
    for layer in res["layers"]:
        g = layer["gemm"]
        gemm = f"{g['n']}x{g['k']}x{g['m']}" + (f" g{g['groups']}" if g["groups"] > 1 else "") if g else ""
        rows.append([layer["name"], layer["type"], "x".join(map(str, layer["out_shape"])), fmt_count(layer["macs"]),
                     fmt_count(layer["params"]), gemm])
    table(["layer", "type", "output", "MACs/ops", "params", "GEMM n x k x m"], rows)
    print()
    table(["type", "count", "MACs/ops", "params"],
          [[t, v["count"], fmt_count(v["macs"]), fmt_count(v["params"])] for t, v in res["by_type"].items()])
    t = res["totals"]
    print()
    print(f"MACs (conv+fc): {fmt_count(t['macs'])}   all ops: {fmt_count(t['ops'])}   params: {t['params']:,}")
    print(f"weights: {fmt_bytes(t['weights_bytes'])}   activations: {fmt_bytes(t['activation_bytes'])}   "
          f"workspace: {fmt_bytes(t['workspace_bytes'])}   peak memory (with reuse): {fmt_bytes(t['peak_memory_bytes'])}")
    return 0


def cmd_space(args) -> int:
    from ..analysis import analyze_batch
    from ..models import load_space

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
        print_json(res)
        return 0
    print(f"{space.name}: {space.n_genes} genes, {space.size:,} architectures ({float(space.size):.3g})")
    table(["gene", "options"], [[g.name, ", ".join(map(str, g.options))] for g in space.genes])
    print()
    table(["sample", "MACs", "params", "encoding"],
          [[i, fmt_count(s["macs"]), fmt_count(s["params"]), " ".join(map(str, s["encoding"]))] for i, s in enumerate(samples)])
    if args.decode is not None:
        print()
        print(space.decode_yaml(X[min(args.decode, len(X) - 1)]))
    return 0


def _analyze_arguments(p) -> None:
    p.add_argument("path", help="model file: .yaml, .prototxt, .onnx or file.py:factory")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _space_arguments(p) -> None:
    p.add_argument("path")
    p.add_argument("--json", action="store_true")
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--decode", type=int, default=None, metavar="I", help="also print sample I as a model YAML")


ANALYZE = Command("per-layer MACs, params, GEMM sizes and memory of a model", _analyze_arguments, cmd_analyze)
SPACE = Command("genes, size and sampled candidates of a search space", _space_arguments, cmd_space)
