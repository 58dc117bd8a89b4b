"""Issue 11: does another process sharing this one's core distort timings by network length?

Not shipped (experiments/ only). Two checks, each short; run them pinned to a core another job
also uses (or not, to see the quiet case):

    # 1. per run: wall time and this process's CPU share (CPU time / wall) of one mobile and one
    #    NAS-Bench-201 sample (seed 5; neither the zoo nor the validation seed 0)
    taskset -c 1 python experiments/own_share.py runs --runs 200
    # 2. the protocol with and without the own-core filter (``_protocol.OWN_SHARE``), A B A B, on
    #    the first N validation samples of each space (seed 0: only measured, never fitted), each
    #    against the benchmark's figure (experiments/new_machine/new_machine.json)
    taskset -c 1 python experiments/own_share.py ab --per-space 8
    # 3. a profile record's refit (kernel_diagnosis.py collect) scored end to end on space samples
    #    timed by part_diagnosis.py collect (seed 2: neither the zoo nor the validation seed 0)
    python experiments/own_share.py score RECORD.json PARTS.json [PARTS2.json ...]
    # 4. the NB201 samples in the fit, on and off, on a record taken before `profile` profiled them
    #    (its NB201 samples of seed 1, profiled after the calibration networks, added to the fit)
    python experiments/own_share.py nb201 RECORD.json PARTS.json [PARTS2.json ...]
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import kernel_diagnosis as K  # noqa: E402
import new_machine as NM  # noqa: E402
import part_diagnosis as PD  # noqa: E402

from augur_nas.costmodel import latency_ms  # noqa: E402
from augur_nas.lowering import lower  # noqa: E402
from augur_nas.measure import _profiling as P  # noqa: E402
from augur_nas.measure._protocol import OWN_SHARE, time_runners  # noqa: E402
from augur_nas.measure._runners import OrtRunner, prepare  # noqa: E402
from augur_nas.measure._settings import RuntimeSettings  # noqa: E402
from augur_nas.models import load_space  # noqa: E402
from augur_nas.profile import load_profile  # noqa: E402


def _run_shares(runner, n: int) -> tuple:
    w, c = np.empty(n), np.empty(n)
    for i in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        runner.run()
        w[i], c[i] = time.perf_counter() - t0, time.process_time() - c0
    return w * 1e3, c / w


def runs(args) -> None:
    fuse = load_profile("x86-xeon-avx512-ort").latency.fuse
    with tempfile.TemporaryDirectory() as d:
        for name in ("mobile", "nb201"):
            space = load_space(ROOT / f"spaces/{name}.yaml")
            net = P._OrtNet(name, space.decode(space.sample(1, seed=5)[0]), d, fuse)
            r = OrtRunner(net.path, RuntimeSettings())
            for _ in range(5):
                r.run()
            w, s = _run_shares(r, args.runs)
            r.close()
            held = s >= OWN_SHARE
            print(f"{name}: wall median {np.median(w):.3f} ms (min {w.min():.3f}); CPU share median {np.median(s):.2f}; "
                  f"runs that held their core: {held.sum()} of {len(w)}, median "
                  f"{np.median(w[held]) if held.any() else float('nan'):.3f} ms; the others: "
                  f"{np.median(w[~held]) if (~held).any() else float('nan'):.3f} ms")


def ab(args) -> None:
    bench = json.loads(Path(args.bench).read_text())
    bm = {r["label"]: r["measured_ms"] for r in bench["per_network"]}
    items = [it for it in NM.validation_set(30)
             if it[1] == "samples" and int(it[0].split("[")[1].rstrip("]")) < args.per_space]
    with tempfile.TemporaryDirectory() as d:
        nets = prepare([(lab, m) for lab, _, m in items], d)
        runners = {n.label: OrtRunner(n.onnx_path, RuntimeSettings()) for n in nets}
        try:
            for rep in range(args.reps):
                for share in (None, OWN_SHARE):
                    res = time_runners(runners, rounds=6, round_s=0.05, warmup_s=0.05, quiet=None, own_share=share,
                                       seed=rep)
                    line = f"rep {rep} own_share {share}: "
                    for g in ("mobile", "resnet", "nb201"):
                        q = np.array([res[lab].median_ms / bm[lab] for lab in res if lab.startswith(g + "[")])
                        line += f"{g} now/bench {np.median(q):.3f} ({q.min():.2f}..{q.max():.2f})  "
                    line += (f"runs left out {sum(t.shared_runs for t in res.values())}, "
                             f"rounds set aside {sum(t.contended for t in res.values())}")
                    print(line, flush=True)
        finally:
            for r in runners.values():
                r.close()


def _part_tables(rec) -> list:
    return [(n["label"], n["space"], PD._table(n["label"], rec["seed"]), n["e2e_ms"]) for n in rec["networks"]]


def score(args, raw=None, tag=None) -> None:
    raw = raw if raw is not None else K.load_raw(args.raw)
    prof = P.fit_ort(raw, "refit", RuntimeSettings())[0]
    c = prof.fit["calibration_networks"]["networks"]
    ce = np.array([v["error_pct"] for v in c.values()]) / 100
    e = prof.fit["end_to_end_calibration"]
    print(f"{tag or args.raw}: calibration networks in sample {100 * np.mean(np.abs(ce) <= 0.1):.0f}% within ±10% "
          f"(rms {np.sqrt(np.mean(ce ** 2)):.3f}); kernel scale {e['kernel_scale']}, per call {e['per_call_ms']}, "
          f"per node {e['per_layer_ms']}")
    for path in args.parts:
        T = _part_tables(json.loads(gzip.decompress(Path(path).read_bytes()) if path.endswith(".gz") else Path(path).read_text()))
        r = np.array([float(latency_ms(t, prof.latency)[0][0]) / e2e for _, _, t, e2e in T])
        sp = np.array([s for _, s, _, _ in T])
        groups = " ".join(f"{g} {np.median(r[sp == g]):.3f}" for g in np.unique(sp))
        print(f"  {path}: {100 * np.mean(np.abs(r - 1) <= 0.1):.0f}% within ±10%, in shape "
              f"{100 * np.mean(np.abs(r / np.median(r) - 1) <= 0.1):.0f}%; median pred/meas {groups}")


def _with_nb201_samples(raw) -> dict:
    """``raw`` with the in-place samples of its NB201 space samples (seed 1) added to the fit's:
    the record's space samples (mobile, resnet, nb201; 10 each, in that order) own its in-situ
    samples in order, each network as many as its live conv/dwconv/fc layers."""
    tables = []
    for name in ("mobile", "resnet", "nb201"):
        space = load_space(ROOT / f"spaces/{name}.yaml")
        for i, x in enumerate(space.sample(10, seed=1)):
            m = space.decode(x)
            tables.append((f"{name}[s1:{i}]", lower(m, np.zeros((1, m.n_genes), dtype=np.int64))))
    ins, owner, pos = raw["space_nodes"]["in_situ"], [], 0
    for lab, t in tables:
        left = collections.Counter(op for s, op in enumerate(t.ops) if op in ("conv", "dwconv", "fc") and t.rows["mask"][s, 0])
        while pos < len(ins) and left[ins[pos]["kind"]] > 0:
            left[ins[pos]["kind"]] -= 1
            owner.append(lab)
            pos += 1
    nb_ins = [s for s, lab in zip(ins, owner) if lab.startswith("nb201")]
    nb_kinds = [s for s in raw["space_nodes"]["kinds"] if s["net"].startswith("nb201")]
    return dict(raw, in_situ=raw["in_situ"] + nb_ins, kinds=raw["kinds"] + nb_kinds)


def nb201(args) -> None:
    raw = K.load_raw(args.raw)
    score(args, raw, f"{args.raw} (calibration networks only)")
    score(args, _with_nb201_samples(raw), f"{args.raw} (+ its NB201 samples of seed 1)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("runs")
    a.add_argument("--runs", type=int, default=200)
    b = sub.add_parser("ab")
    b.add_argument("--per-space", type=int, default=8)
    b.add_argument("--reps", type=int, default=2)
    b.add_argument("--bench", default=str(ROOT / "experiments/new_machine/new_machine.json"))
    c = sub.add_parser("score")
    c.add_argument("raw")
    c.add_argument("parts", nargs="+")
    n = sub.add_parser("nb201")
    n.add_argument("raw")
    n.add_argument("parts", nargs="+")
    args = ap.parse_args(argv)
    {"runs": runs, "ab": ab, "score": score, "nb201": nb201}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
