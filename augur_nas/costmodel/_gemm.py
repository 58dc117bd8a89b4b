"""The GEMM time model: piecewise linear in (n, m, k), as Augur models matrix multiplication.

A conv layer is ``groups`` GEMMs of ``[n x k] x [k x m]`` (n kernels per group, k kernel volume
per group, m output pixels). Lu et al. (section 5.2) found the time linear in n, m and k on the
CPUs (one linear model), and on the GPUs bipartite in n (a change of regime at n = 128) and
tripartite in m. ``PiecewiseGemm`` holds breakpoints on n and on m; each of the
``(len(n_breaks) + 1) x (len(m_breaks) + 1)`` regions is a non-negative linear model on the
features ``[1, n*m*k, n*k, m*k, n*m]`` (a per-call overhead, the multiply-adds, and the three
matrices' sizes: weights, im2col input, output). Region ``i`` on n covers
``n_breaks[i-1] <= n < n_breaks[i]``.

``n_axis: nk`` puts the first axis's breakpoints on the weight elements ``n*k`` instead of n: a
fully connected layer (m = the batch) changes regime where its weights stop fitting in a cache,
whatever its shape.

Dims outside the fitted range follow the ``outside`` rule: ``extrapolate`` (default: use the
model of the nearest region as is), ``clip`` (price the dims clipped into the range), or
``raise`` (a ProfileError naming the layer and its dims).
"""

from __future__ import annotations

import numpy as np

from .._errors import ProfileError
from . import _check
from ._nnls import nnls

FEATURES = ("1", "nmk", "nk", "mk", "nm")
OUTSIDE_RULES = ("extrapolate", "clip", "raise")
N_AXES = ("n", "nk")


def gemm_features(n, m, k) -> np.ndarray:
    """The feature matrix ``[..., 5]`` of GEMM dims (float64, broadcast)."""
    n, m, k = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (n, m, k)))
    return np.stack([np.ones_like(n), n * m * k, n * k, m * k, n * m], axis=-1)


class PiecewiseGemm:
    """Time (ms) of one ``[n x k] x [k x m]`` GEMM, piecewise linear with breakpoints on n and m."""

    def __init__(self, coef, n_breaks=(), m_breaks=(), n_range=None, m_range=None, k_range=None,
                 outside: str = "extrapolate", n_axis: str = "n"):
        if n_axis not in N_AXES:
            raise ValueError(f"n_axis must be one of {', '.join(N_AXES)}, not {n_axis!r}")
        self.n_axis = n_axis
        self.n_breaks = np.asarray(sorted(float(b) for b in n_breaks), dtype=np.float64)
        self.m_breaks = np.asarray(sorted(float(b) for b in m_breaks), dtype=np.float64)
        coef = np.asarray(coef, dtype=np.float64)
        shape = (len(self.n_breaks) + 1, len(self.m_breaks) + 1, len(FEATURES))
        if coef.shape == (len(FEATURES),):
            coef = np.broadcast_to(coef, shape).copy()
        if coef.shape != shape:
            raise ValueError(f"coef must have shape {shape} (n regions, m regions, features), got {coef.shape}")
        if not np.isfinite(coef).all() or (coef < 0).any():
            raise ValueError("GEMM coefficients must be finite and non-negative")
        if outside not in OUTSIDE_RULES:
            raise ValueError(f"outside must be one of {', '.join(OUTSIDE_RULES)}, not {outside!r}")
        self.coef = coef
        self.n_range = None if n_range is None else (float(n_range[0]), float(n_range[1]))
        self.m_range = None if m_range is None else (float(m_range[0]), float(m_range[1]))
        self.k_range = None if k_range is None else (float(k_range[0]), float(k_range[1]))
        self.outside = outside

    # ----------------------------------------------------------------------------------- build

    @classmethod
    def linear(cls, c1=0.0, nmk=0.0, nk=0.0, mk=0.0, nm=0.0, **kw) -> "PiecewiseGemm":
        """One region: ``t = c1 + nmk*n*m*k + nk*n*k + mk*m*k + nm*n*m``."""
        return cls(np.array([c1, nmk, nk, mk, nm], dtype=np.float64), **kw)

    @classmethod
    def fit(cls, n, m, k, t, n_breaks=(), m_breaks=(), relative: bool = True, features=FEATURES,
            outside: str = "extrapolate", n_axis: str = "n") -> "PiecewiseGemm":
        """Fit the regions by non-negative least squares on measured times ``t`` (ms).

        ``relative`` weights each sample by ``1/t`` (relative errors: small GEMMs count as much as
        big ones). ``features`` may leave some of ``FEATURES`` out (their coefficients stay 0). A
        region without samples takes the model fitted on all samples.
        """
        n, m, k, t = (np.asarray(v, dtype=np.float64).reshape(-1) for v in np.broadcast_arrays(n, m, k, t))
        if len(t) == 0:
            raise ValueError("fit needs at least one sample")
        if (t <= 0).any() if relative else (t < 0).any():
            raise ValueError("measured times must be positive")
        use = np.array([f in features for f in FEATURES])
        model = cls(np.zeros(len(FEATURES)), n_breaks, m_breaks,
                    (n.min(), n.max()), (m.min(), m.max()), (k.min(), k.max()), outside, n_axis)
        X = gemm_features(n, m, k)
        w = 1.0 / t if relative else np.ones_like(t)

        def solve(sel):
            c = np.zeros(len(FEATURES))
            c[use] = nnls(X[sel][:, use] * w[sel, None], t[sel] * w[sel])
            return c

        everything = solve(np.ones(len(t), dtype=bool))
        ri, rj = model.regions(n, m, k)
        for i in range(model.coef.shape[0]):
            for j in range(model.coef.shape[1]):
                sel = (ri == i) & (rj == j)
                model.coef[i, j] = solve(sel) if sel.any() else everything
        return model

    # ---------------------------------------------------------------------------------- predict

    def regions(self, n, m, k=None):
        """Region indices ``(i, j)`` of dims n, m (and k, for ``n_axis: nk``)."""
        first = np.asarray(n, dtype=np.float64)
        if self.n_axis == "nk":
            first = first * np.asarray(k, dtype=np.float64)
        ri = np.searchsorted(self.n_breaks, first, side="right")
        rj = np.searchsorted(self.m_breaks, np.asarray(m, dtype=np.float64), side="right")
        return ri, rj

    def outside_mask(self, n, m, k) -> np.ndarray:
        """Where the dims lie outside the fitted range (all False when no range is recorded)."""
        out = np.zeros(np.broadcast(np.asarray(n), np.asarray(m), np.asarray(k)).shape, dtype=bool)
        for v, r in ((n, self.n_range), (m, self.m_range), (k, self.k_range)):
            if r is not None:
                v = np.asarray(v, dtype=np.float64)
                out = out | (v < r[0]) | (v > r[1])
        return out

    def predict(self, n, m, k, mask=None, names=None, profile: str | None = None) -> np.ndarray:
        """Time (ms) of one GEMM of dims n, m, k, elementwise over arrays of any (broadcast) shape.

        ``mask`` (same shape) marks the GEMMs that exist; only those are checked against the
        ``raise`` rule. ``names`` (one per index of the first axis) name the layers in its message.
        """
        n = np.asarray(n, dtype=np.float64)
        m = np.asarray(m, dtype=np.float64)
        k = np.asarray(k, dtype=np.float64)
        if self.outside == "raise":
            bad = self.outside_mask(n, m, k)
            if mask is not None:
                bad = bad & np.asarray(mask, dtype=bool)
            if bad.any():
                self._raise_outside(n, m, k, bad, names, profile)
        elif self.outside == "clip":
            n, m, k = (np.clip(v, *r) if r is not None else v
                       for v, r in ((n, self.n_range), (m, self.m_range), (k, self.k_range)))
        c = self.coef
        if c.shape[0] == 1 and c.shape[1] == 1:
            c0 = c[0, 0]
            return c0[0] + c0[1] * (n * m * k) + c0[2] * (n * k) + c0[3] * (m * k) + c0[4] * (n * m)
        ri, rj = self.regions(n, m, k)
        # one flat region index and one gather per coefficient: ``c[ri, rj]`` builds a [..., 5]
        # block whose strided columns cost ~1.3x more on a segment's [slots, rows] arrays
        region = ri * c.shape[1] + rj
        cc = [np.take(c[:, :, f].ravel(), region) for f in range(c.shape[2])]
        return cc[0] + cc[1] * (n * m * k) + cc[2] * (n * k) + cc[3] * (m * k) + cc[4] * (n * m)

    def _raise_outside(self, n, m, k, bad, names, profile):
        n, m, k, bad = np.broadcast_arrays(n, m, k, bad)
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        who = ""
        if names is not None and len(idx) >= 1 and idx[0] < len(names):
            who = f"layer `{names[idx[0]]}`" + (f" of candidate {idx[1]}" if len(idx) > 1 else "") + ": "
        rng = ", ".join(f"{d} {r[0]:g}..{r[1]:g}" for d, r in (("n", self.n_range), ("m", self.m_range), ("k", self.k_range))
                        if r is not None)
        raise ProfileError(
            f"{who}the GEMM n={n[idx]:g}, m={m[idx]:g}, k={k[idx]:g} lies outside the range the GEMM model"
            f"{f' of profile {profile}' if profile else ''} was fitted on ({rng}) and its rule is "
            f"`outside: raise`; use `extrapolate` or `clip` to price it anyway")

    # ------------------------------------------------------------------------------ plain data

    def to_dict(self) -> dict:
        d = {
            "features": list(FEATURES),
            "n_breaks": [_check.plain(b) for b in self.n_breaks],
            "m_breaks": [_check.plain(b) for b in self.m_breaks],
            "coef": [[[_check.plain(v) for v in self.coef[i, j]] for j in range(self.coef.shape[1])]
                     for i in range(self.coef.shape[0])],
            "outside": self.outside,
        }
        if self.n_axis != "n":
            d["n_axis"] = self.n_axis
        rng = {dim: [_check.plain(r[0]), _check.plain(r[1])] for dim, r in (("n", self.n_range), ("m", self.m_range), ("k", self.k_range))
               if r is not None}
        if rng:
            d["range"] = rng
        return d

    @classmethod
    def from_dict(cls, d, source: str | None = None, key: str = "gemm") -> "PiecewiseGemm":
        _check.mapping(d, source, key, required=("coef",), optional=("features", "n_breaks", "m_breaks", "range", "outside", "n_axis"))
        feats = d.get("features", list(FEATURES))
        if list(feats) != list(FEATURES):
            raise _check.err(f"`{key}.features` must be {list(FEATURES)} (in this order), got {feats}", source, f"{key}.features")
        n_breaks = _check.numbers(d.get("n_breaks", []), source, f"{key}.n_breaks")
        m_breaks = _check.numbers(d.get("m_breaks", []), source, f"{key}.m_breaks")
        for name, br in (("n_breaks", n_breaks), ("m_breaks", m_breaks)):
            if any(b2 <= b1 for b1, b2 in zip(br, br[1:])):
                raise _check.err(f"`{key}.{name}` must increase strictly, got {br}", source, f"{key}.{name}")
        ni, mj = len(n_breaks) + 1, len(m_breaks) + 1
        coef = d["coef"]
        if not isinstance(coef, list) or len(coef) != ni:
            raise _check.err(f"`{key}.coef` must be a list of {ni} n-region(s) (one more than n_breaks)", source, f"{key}.coef")
        arr = np.zeros((ni, mj, len(FEATURES)))
        for i, row in enumerate(coef):
            if not isinstance(row, list) or len(row) != mj:
                raise _check.err(f"`{key}.coef[{i}]` must be a list of {mj} m-region(s) (one more than m_breaks)",
                                 source, f"{key}.coef[{i}]")
            for j, c in enumerate(row):
                vals = _check.numbers(c, source, f"{key}.coef[{i}][{j}]")
                if len(vals) != len(FEATURES):
                    raise _check.err(f"`{key}.coef[{i}][{j}]` must hold {len(FEATURES)} coefficients "
                                     f"({', '.join(FEATURES)}), got {len(vals)}", source, f"{key}.coef[{i}][{j}]")
                arr[i, j] = vals
        ranges = {}
        if "range" in d:
            _check.mapping(d["range"], source, f"{key}.range", optional=("n", "m", "k"))
            for dim, r in d["range"].items():
                lo_hi = _check.numbers(r, source, f"{key}.range.{dim}")
                if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
                    raise _check.err(f"`{key}.range.{dim}` must be [low, high] with low <= high, got {r}", source, f"{key}.range.{dim}")
                ranges[dim] = lo_hi
        outside = _check.string(d.get("outside", "extrapolate"), source, f"{key}.outside", OUTSIDE_RULES)
        n_axis = _check.string(d.get("n_axis", "n"), source, f"{key}.n_axis", N_AXES)
        return cls(arr, n_breaks, m_breaks, ranges.get("n"), ranges.get("m"), ranges.get("k"), outside, n_axis)

    def scaled(self, factor: float) -> "PiecewiseGemm":
        """The same model with every coefficient times ``factor``."""
        return PiecewiseGemm(self.coef * factor, self.n_breaks, self.m_breaks, self.n_range, self.m_range,
                             self.k_range, self.outside, self.n_axis)

    def __repr__(self) -> str:
        return (f"PiecewiseGemm({self.n_axis}_breaks={self.n_breaks.tolist()}, m_breaks={self.m_breaks.tolist()}, "
                f"regions={self.coef.shape[0]}x{self.coef.shape[1]}, outside={self.outside!r})")

    def __eq__(self, other) -> bool:
        return isinstance(other, PiecewiseGemm) and self.to_dict() == other.to_dict()

