"""``search --split-server S --uplink BW``: the latency a search minimizes and limits is the best
device/server split's total (``augur_nas.planner``), not the all-local latency."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._errors import ConstraintError
from ..oracle import Oracle
from .._split import Link
from ..profile import load_profile

SPLIT_CHUNK = 256  # candidates lowered at once: a split prices a (candidate, cut) column per split point


class SplitSpec(NamedTuple):
    """The server profile (name or file, as given) and the link of a split search."""

    server: str
    link: Link


def split_spec(server, uplink, downlink=None, rtt="0ms", dtype="float32") -> SplitSpec | None:
    """A checked ``SplitSpec`` (None without a server); the server profile is loaded to fail early."""
    if server is None:
        if uplink is not None or downlink is not None:
            raise ConstraintError("--uplink/--downlink set a split's link; give --split-server too (the profile "
                                  "that runs the rest of each network)")
        return None
    if uplink is None:
        raise ConstraintError(f"--split-server {server} needs --uplink, the device -> server bandwidth (e.g. 20Mbps)")
    link = uplink if isinstance(uplink, Link) else Link.of(uplink, downlink, rtt, dtype)
    load_profile(server)
    return SplitSpec(server, link)


class SplitOracle(Oracle):
    """An ``Oracle`` whose ``latency_ms`` is the best split's total between its device and a server;
    ``local_latency_ms`` keeps the all-local figure, ``split_cut`` the chosen cut (layer slots on the
    device), ``split_device_ms``/``split_transfer_ms``/``split_server_ms`` its parts. ``memory_mb``
    stays the whole network's on the device (an upper bound on any prefix's)."""

    def __init__(self, space, device, spec: SplitSpec, batch: int = 1):
        super().__init__(space, device, batch=batch)
        self.split = spec
        self.server_profile = load_profile(spec.server)

    def evaluate(self, X, batch=None, breakdown: bool = True, reference: bool = False) -> dict:
        out = super().evaluate(X, batch, breakdown, reference)
        X = self._encodings(X)
        parts = {k: np.zeros(len(X)) for k in ("total_ms", "cut", "device_ms", "transfer_ms", "server_ms")}
        for lo in range(0, len(X), SPLIT_CHUNK):
            got = self.split_latency(X[lo:lo + SPLIT_CHUNK], self.server_profile, self.split.link, batch)
            for k in parts:
                parts[k][lo:lo + SPLIT_CHUNK] = got[k]
        out["local_latency_ms"] = out["latency_ms"]
        out["latency_ms"] = parts["total_ms"]
        out["split_cut"] = parts["cut"].astype(np.int64)
        for k in ("device_ms", "transfer_ms", "server_ms"):
            out[f"split_{k}"] = parts[k]
        return out

    def __repr__(self) -> str:
        return (f"SplitOracle(space={self.space.name!r}, device={self.device!r}, server={self.server_profile.name!r}, "
                f"{self.split.link.describe()}, batch={self.batch})")
