"""``augur-nas split``: where to split a model between a device and a server (``augur_nas.planner``)."""

from __future__ import annotations

import io
import re

from .._atomic import atomic_write, check_out_file
from .._format import print_json, table
from .._imports import optional
from ..models import load_model
from ..planner import Link, split_points
from ..profile import load_profile
from ._args import Once, positive_int
from ._command import Command
from .predict import add_input_shape


def split(path, device, server, uplink, downlink=None, rtt="0ms", dtype="float32", batch: int = 1,
          input_shape=None) -> dict:
    """The JSON object of ``augur-nas split``."""
    link = Link.of(uplink, downlink, rtt, dtype)  # a bad link fails before the model is read
    dev, srv = load_profile(device), load_profile(server)
    model = load_model(path, input_shape=input_shape)
    points = split_points(model, dev, srv, link, batch)
    best = min(points, key=lambda p: p.total_ms)
    rows = [dict(p._asdict(), tensor_shape=list(p.tensor_shape)) for p in points]
    return {"model": model.name, "device": dev.name, "server": srv.name, "batch": batch,
            "link": {"uplink_mbps": link.uplink_mbps, "downlink_mbps": link.downlink_mbps, "rtt_ms": link.rtt_ms,
                     "dtype": link.dtype},
            "all_local_ms": points[-1].total_ms, "all_server_ms": points[0].total_ms,
            "best": dict(rows[points.index(best)]), "splits": rows}


def cmd_split(args) -> int:
    if args.plot:
        check_out_file(args.plot, "--plot")
    res = split(args.path, args.device, args.server, args.uplink, args.downlink, args.rtt, args.dtype, args.batch,
                args.input_shape)
    if args.plot:
        _plot(res, args.plot)
    if args.json:
        print_json(res)
        return 0
    ln = res["link"]
    print(f"{res['model']}: device {res['device']}, server {res['server']}, batch {res['batch']}; uplink "
          f"{ln['uplink_mbps']:g} Mbit/s, downlink {ln['downlink_mbps']:g} Mbit/s, rtt {ln['rtt_ms']:g} ms, "
          f"tensors sent as {ln['dtype']}")
    rows = []
    for p in res["splits"]:
        mark = " <- best" if p["cut"] == res["best"]["cut"] else ""
        rows.append([p["cut"], p["after"], p["kind"], "x".join(map(str, p["tensor_shape"])),
                     f"{p['bytes_sent'] / 1e3:,.1f}", f"{p['device_ms']:.2f}",
                     f"{p['uplink_ms'] + p['rtt_ms'] + p['downlink_ms']:.2f}", f"{p['server_ms']:.2f}",
                     f"{p['total_ms']:.2f}{mark}", f"{p['device_memory_mb']:.1f}"])
    table(["cut", "after (last on device)", "kind", "tensor", "kB sent", "device ms", "transfer ms", "server ms",
           "total ms", "device MB"], rows)
    b = res["best"]
    print(f"\nbest: {b['kind']} at cut {b['cut']} (after {b['after']}): {b['total_ms']:.2f} ms = device "
          f"{b['device_ms']:.2f} + transfer {b['uplink_ms'] + b['rtt_ms'] + b['downlink_ms']:.2f} + server "
          f"{b['server_ms']:.2f}; all-local {res['all_local_ms']:.2f} ms, all-server {res['all_server_ms']:.2f} ms")
    print("transfer = uplink (tensor) + rtt + downlink (the output); device MB: the prefix's predicted memory "
          "on the device")
    return 0


def _plot(res: dict, path: str) -> None:
    """Stacked bars per split point: device, transfer and server time."""
    optional("matplotlib", "split --plot").use("Agg")
    plt = optional("matplotlib.pyplot", "split --plot")

    pts = res["splits"]
    x = range(len(pts))
    dev = [p["device_ms"] for p in pts]
    tr = [p["uplink_ms"] + p["rtt_ms"] + p["downlink_ms"] for p in pts]
    srv = [p["server_ms"] for p in pts]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(pts) + 2), 4.2))
    ax.bar(x, dev, color="#4477aa", label=f"device ({res['device']})")
    ax.bar(x, tr, bottom=dev, color="#ccbb44", label="transfer")
    ax.bar(x, srv, bottom=[a + b for a, b in zip(dev, tr)], color="#ee6677", label=f"server ({res['server']})")
    best = [i for i, p in enumerate(pts) if p["cut"] == res["best"]["cut"]][0]
    ax.annotate("best", (best, pts[best]["total_ms"]), textcoords="offset points", xytext=(0, 4), ha="center",
                fontsize=8)
    ax.set_xticks(list(x))
    ax.set_xticklabels([p["after"] for p in pts], rotation=90, fontsize=6)
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(f"{res['model']}: split after each layer ({res['link']['uplink_mbps']:g} Mbit/s up)", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def _split_arguments(p) -> None:
    p.add_argument("path", help="model file: .yaml, .prototxt, .onnx, file.py:factory, or a NAS-Bench-201 string")
    p.add_argument("--device", action=Once, required=True, metavar="NAME|FILE",
                   help="the profile that runs the first part (see `augur-nas devices`) or a profile YAML file")
    p.add_argument("--server", action=Once, required=True, metavar="NAME|FILE",
                   help="the profile that runs the rest")
    p.add_argument("--uplink", required=True, metavar="BW", help="device -> server bandwidth, e.g. 20Mbps, 500kbps, "
                                                                 "12.5MB/s")
    p.add_argument("--downlink", default=None, metavar="BW", help="server -> device bandwidth (default: the uplink's)")
    p.add_argument("--rtt", default="0ms", metavar="T", help="round-trip time paid once per split request, e.g. 30ms "
                                                             "(default: 0ms)")
    p.add_argument("--dtype", default="float32", metavar="float32|float16|int8",
                   help="encoding of the tensors sent (the compute stays float32) (default: float32)")
    p.add_argument("--batch", type=positive_int, default=1, metavar="N", help="images per forward pass (default 1)")
    add_input_shape(p)
    p.add_argument("--plot", default=None, metavar="F.png", help="write a stacked bar chart of every split point")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    # let `--uplink -3Mbps` reach the strict bandwidth parser (and be refused there with its own
    # message) instead of argparse taking "-3Mbps" for an option
    if hasattr(p, "_negative_number_matcher"):
        p._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[A-Za-z/]*$")


SPLIT = Command("where to split a model between a device and a server: every single-tensor cut priced",
                _split_arguments, cmd_split,
                description="For every point where the network is one tensor: the device time of the part before "
                            "it, the time to send that tensor (and the result back), the server time of the rest "
                            "and the total; all-local and all-server are the two ends; the best split is named.")
