"""``augur-nas analyze`` and ``augur-nas space``: what a model or a search space contains."""

from __future__ import annotations

import sys

from .._atomic import atomic_write
from .._errors import SpecError
from .._format import fmt_bytes, fmt_count, print_json, table
from ..analysis import analyze, analyze_batch
from ..models import load_model, load_space
from ._command import Command
from .predict import add_input_shape


def cmd_analyze(args) -> int:
    model = load_model(args.path, input_shape=args.input_shape)
    res = analyze(model)
    res["input_shape"], res["input_from"] = list(model.input_info.shape), model.input_info.source
    if args.json:
        print_json(res)
        return 0
    print(f"{res['model']}: input shape {model.input_info.describe()}, float32, batch 1")
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
    space = load_space(args.path)
    if args.encode is not None:
        return _encode(space, args)
    X = space.sample(args.samples, seed=args.seed)
    if args.decode is not None and args.output is None and not args.json:
        # the clean form: only the model YAML on stdout, so `> model.yaml` is a model file
        sys.stdout.write(_decoded(space, X, args))
        return 0
    tot = analyze_batch(space, X)
    samples = []
    for i in range(len(X)):
        samples.append({"encoding": X[i].tolist(),
                        "choices": {g.name: g.options[X[i, j]] for j, g in enumerate(space.genes)},
                        "macs": float(tot["macs"][i]), "params": int(tot["params"][i])})
    res = {"space": space.name, "size": space.size, "genes": [{"name": g.name, "label": lab, "options": list(g.options)}
                                                              for g, lab in zip(space.genes, space.gene_labels)],
           "samples": samples}
    if args.decode is not None and args.output is not None:
        atomic_write(args.output, _decoded(space, X, args))
        res["decoded"] = {"sample": args.decode, "file": args.output}
    if args.json:
        print_json(res)
        return 0
    print(f"{space.name}: {space.n_genes} genes, {space.size:,} architectures ({float(space.size):.3g})")
    table(["gene", "options"], [[lab, ", ".join(map(str, g.options))] for g, lab in zip(space.genes, space.gene_labels)])
    print()
    table(["sample", "MACs", "params", "encoding"],
          [[i, fmt_count(s["macs"]), fmt_count(s["params"]), " ".join(map(str, s["encoding"]))] for i, s in enumerate(samples)])
    if args.decode is not None:
        print()
        print(f"sample {args.decode} written to {args.output} (a model file: `augur-nas predict {args.output} --device ...`)")
    return 0


def _decoded(space, X, args) -> str:
    if not 0 <= args.decode < len(X):
        raise SpecError(f"--decode {args.decode}: there are {len(X)} samples (0..{len(X) - 1}); raise --samples "
                        f"({space.source})")
    x = X[args.decode]
    return (f"# {space.name} sample {args.decode} (seed {args.seed}), encoding {' '.join(map(str, x.tolist()))}\n"
            + space.decode_yaml(x))


def _encode(space, args) -> int:
    """``--encode 'gene=value,...'`` (or an NB201 string): the encoding, and the model with -o/--decode."""
    x = space.encode_text(args.encode)
    choices = {lab: g.options[x[j]] for j, (g, lab) in enumerate(zip(space.genes, space.gene_labels))}
    if args.output is not None:
        atomic_write(args.output, f"# {space.name}, encoding {' '.join(map(str, x.tolist()))}\n" + space.decode_yaml(x))
    if args.json:
        print_json({"space": space.name, "encoding": x.tolist(), "choices": choices, "file": args.output})
        return 0
    print(f"encoding: {' '.join(map(str, x.tolist()))}")
    if args.output is not None:
        print(f"written to {args.output} (a model file)")
    return 0


def _analyze_arguments(p) -> None:
    p.add_argument("path", help="model file: .yaml, .prototxt, .onnx, file.py:factory, or a NAS-Bench-201 string")
    add_input_shape(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _space_arguments(p) -> None:
    p.add_argument("path")
    p.add_argument("--json", action="store_true")
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--decode", type=int, default=None, metavar="I",
                   help="sample I as a model YAML: alone on stdout (`> model.yaml`), or into -o FILE")
    p.add_argument("--encode", default=None, metavar="GENE=VALUE,...",
                   help="the encoding of the given choices (genes by key path or stage name, e.g. "
                        "'s3.depth=3,s3[1].mbconv.kernel=7'; others take option 0), or of a NAS-Bench-201 string")
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="write the decoded (or encoded) model here")


ANALYZE = Command("per-layer MACs, params, GEMM sizes and memory of a model", _analyze_arguments, cmd_analyze)
SPACE = Command("genes, size and sampled candidates of a search space", _space_arguments, cmd_space)
