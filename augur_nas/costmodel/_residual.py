"""A learned correction of the layer-sum latency: a LightGBM model on architecture-level features.

The layer-sum model prices each kernel; what it misses (the runtime's scheduling, cache reuse
between layers, the cost of layout changes, kernels it picks by shape) shows up as a ratio
between measured and predicted latency that depends on the architecture. ``fit-residual``
measures sampled networks end to end and trains a gradient-boosted model of

    r = log(measured_ms / predicted_ms)

on the features below; a prediction is then ``predicted_ms * exp(r)``.

Everything is vectorized: the features are whole-network sums over layer slots (``residual_sums``
of a layer table, additive, so the oracle's fast path gathers them per segment like the latency
itself), turned into a ``[B, F]`` matrix by ``residual_features``; the booster predicts a chunk of
candidates in one call. The model is stored inside the device profile as data: LightGBM's text
model format (a string), never a pickle.
"""

from __future__ import annotations

import numpy as np

from .._errors import AugurError
from .._imports import optional
from ..ops import OPS
from . import _check
from ._trees import parse as parse_trees

# whole-network sums (additive over layer slots) the features are made of
SUM_KEYS = (
    "res.ms_gemm", "res.ms_bytes",
    "res.macs_pw", "res.macs_kxk", "res.macs_narrow", "res.macs_dw", "res.macs_fc",
    "res.n_pw", "res.n_kxk", "res.n_dw", "res.n_fc", "res.n_pool", "res.n_join", "res.n_act", "res.n_other",
    "res.n_fused", "res.n_zero", "res.n_reorder", "res.act_elems", "res.weight_elems",
)
FEATURES = (
    "log_pred_ms", "share_bytes_ms", "log_macs", "log_macs_pw", "log_macs_kxk", "log_macs_dw", "log_macs_fc",
    "dw_share", "pw_share", "n_pw", "n_kxk", "n_dw", "n_fc", "n_pool", "n_join", "n_act", "n_other", "n_fused",
    "n_zero", "n_reorder", "log_act_bytes", "log_weight_bytes", "log_input_elems", "macs_per_layer", "ms_per_layer",
)
MODEL_KIND = "lightgbm"
TARGET = "log(measured_ms / predicted_ms)"


def _count_key(op: str) -> str:
    """The layer-count sum of a bytes-priced op kind: its op-table residual group (a kind the
    table lacks, or a GEMM kind priced as bytes, counts as ``other``)."""
    rec = OPS.get(op)
    group = rec.residual if rec is not None else "other"
    return f"res.n_{group}" if group in ("pool", "join", "act") else "res.n_other"


def residual_sums(table, model, st: np.ndarray, fused: np.ndarray | None, n_reorder=None) -> dict:
    """The ``SUM_KEYS`` of every candidate of a layer table (``[B]`` each), from the slot times
    ``st`` ``[L, B]``, the fusion mask and the layout conversions of the latency model ``model``."""
    rows = table.rows
    mask = rows["mask"]
    L, B = mask.shape
    out = {k: np.zeros(B) for k in SUM_KEYS}
    if n_reorder is not None:
        out["res.n_reorder"] = n_reorder.sum(axis=0)
    live = mask if fused is None else (mask & ~fused)
    ops = table.ops
    for s, op in enumerate(ops):
        if not mask[s].any():
            continue
        fam, _ = model.family(op)
        ex = live[s]
        if fam == "free":
            continue
        if fused is not None:
            out["res.n_fused"] += fused[s]
        out["res.act_elems"] += np.where(ex, rows["out_elems"][s], 0)
        out["res.weight_elems"] += np.where(mask[s], rows["weight_elems"][s], 0)
        if fam == "gemm":
            out["res.ms_gemm"] += st[s]
            macs = np.where(mask[s], rows["macs"][s], 0.0)
            if op == "fc":
                out["res.macs_fc"] += macs
                out["res.n_fc"] += ex
            elif op == "dwconv":
                out["res.macs_dw"] += macs
                out["res.n_dw"] += ex
            else:
                g = np.maximum(rows["groups"][s], 1)
                cin = rows["in_c"][s] // g
                pw = rows["k"][s] == cin
                narrow = cin < 8
                out["res.macs_narrow"] += np.where(narrow, macs, 0.0)
                out["res.macs_pw"] += np.where(pw & ~narrow, macs, 0.0)
                out["res.macs_kxk"] += np.where(~pw & ~narrow, macs, 0.0)
                out["res.n_pw"] += ex & pw
                out["res.n_kxk"] += ex & ~pw
        else:
            out["res.ms_bytes"] += st[s]
            out[_count_key(op)] += ex
    sel = getattr(table, "select_pos", None) or {}
    behind = set()
    for s, pos in sel.items():
        ins = table.inputs[s]
        behind.update(ins)
        is_zero = np.array([i >= 0 and ops[i] == "zero" for i in ins])
        if is_zero.any():
            out["res.n_zero"] += is_zero[np.asarray(pos)]
    for s, op in enumerate(ops):
        if op == "zero" and s not in behind:  # a fixed `zero` layer, not a choice
            out["res.n_zero"] += 1
    return out


def residual_features(sums: dict, latency_ms, in_elems) -> np.ndarray:
    """The ``[B, FEATURES]`` matrix from whole-network sums, the layer-sum latency and the input size."""
    cols = _feature_columns(sums, latency_ms, in_elems)
    return np.stack([cols[f] for f in FEATURES], axis=1)


def _feature_columns(sums: dict, latency_ms, in_elems) -> dict:
    """``residual_features``' columns by name (``[B]`` each)."""
    lat = np.maximum(np.asarray(latency_ms, dtype=np.float64), 1e-6)
    B = lat.shape[0]
    g = lambda k: np.asarray(sums.get(k, np.zeros(B)), dtype=np.float64)  # noqa: E731
    macs = g("res.macs_pw") + g("res.macs_kxk") + g("res.macs_narrow") + g("res.macs_dw") + g("res.macs_fc")
    ms = g("res.ms_gemm") + g("res.ms_bytes")
    layers = (g("res.n_pw") + g("res.n_kxk") + g("res.n_dw") + g("res.n_fc") + g("res.n_pool") + g("res.n_join")
              + g("res.n_act") + g("res.n_other"))
    cols = {
        "log_pred_ms": np.log(lat),
        "share_bytes_ms": g("res.ms_bytes") / np.maximum(ms, 1e-9),
        "log_macs": np.log1p(macs),
        "log_macs_pw": np.log1p(g("res.macs_pw")),
        "log_macs_kxk": np.log1p(g("res.macs_kxk") + g("res.macs_narrow")),
        "log_macs_dw": np.log1p(g("res.macs_dw")),
        "log_macs_fc": np.log1p(g("res.macs_fc")),
        "dw_share": g("res.macs_dw") / np.maximum(macs, 1.0),
        "pw_share": g("res.macs_pw") / np.maximum(macs, 1.0),
        "n_pw": g("res.n_pw"), "n_kxk": g("res.n_kxk"), "n_dw": g("res.n_dw"), "n_fc": g("res.n_fc"),
        "n_pool": g("res.n_pool"), "n_join": g("res.n_join"), "n_act": g("res.n_act"), "n_other": g("res.n_other"),
        "n_fused": g("res.n_fused"), "n_zero": g("res.n_zero"), "n_reorder": g("res.n_reorder"),
        "log_act_bytes": np.log1p(4 * g("res.act_elems")),
        "log_weight_bytes": np.log1p(4 * g("res.weight_elems")),
        "log_input_elems": np.log1p(np.broadcast_to(np.asarray(in_elems, dtype=np.float64), (B,))),
        "macs_per_layer": np.log1p(macs / np.maximum(layers, 1.0)),
        "ms_per_layer": np.log(np.maximum(ms, 1e-9) / np.maximum(layers, 1.0)),
    }
    return cols


class ResidualModel:
    """A LightGBM booster (text model) predicting ``log(measured / predicted)`` from ``FEATURES``."""

    def __init__(self, model: str, features=FEATURES, trained: dict | None = None, max_abs_log: float = 1.0):
        self.model = str(model)
        self.features = tuple(features)
        self.trained = dict(trained or {})
        self.max_abs_log = float(max_abs_log)
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise ValueError(f"unknown residual features: {unknown}")
        self._cols = np.array([FEATURES.index(f) for f in self.features], dtype=np.int64)
        self._booster = None
        self._forest = False  # not parsed yet (None: LightGBM's predict is kept, see _trees.parse)

    @property
    def booster(self):
        if self._booster is None:
            lightgbm = optional("lightgbm", "a profile's LightGBM residual model")
            self._booster = lightgbm.Booster(model_str=self.model)
        return self._booster

    def log_ratio(self, features: np.ndarray) -> np.ndarray:
        """``log(measured / predicted)`` for a ``[B, FEATURES]`` matrix (one booster call)."""
        F = np.asarray(features, dtype=np.float64)
        if F.shape[0] == 0:
            return np.zeros(0)
        r = self.raw_score(np.ascontiguousarray(F[:, self._cols].T))
        return np.clip(np.asarray(r, dtype=np.float64), -self.max_abs_log, self.max_abs_log)

    def raw_score(self, XT: np.ndarray) -> np.ndarray:
        """The booster's prediction for the model's own features given as rows, ``XT``
        ``[features, B]``: LightGBM's trees evaluated as numpy arrays, a chunk at once (``_trees``;
        equal to ``booster.predict`` to the last bits), or LightGBM itself for a model ``_trees``
        does not reproduce."""
        if self._forest is False:
            self._forest = parse_trees(self.model)
        if self._forest is not None:
            return self._forest.predict_columns(XT)
        return self.booster.predict(XT.T, num_threads=1)

    def apply(self, latency_ms, sums: dict, in_elems, batch: int = 1) -> np.ndarray:
        """Corrected latency of a chunk: ``latency_ms * exp(r(features))``.

        The booster is trained on single images: at a batch of ``batch`` its time features (the
        layer sum, ``res.ms_*``) are taken per image, so the ratio is that of one image (fed the
        batch's own sums, it extrapolated past its training range: resnet18's ratio drifted from
        1.049 at batch 1 to 1.061 at 32)."""
        lat = np.asarray(latency_ms, dtype=np.float64)
        if len(lat) == 0:
            return lat
        if batch != 1:
            sums = {k: (v / batch if k in ("res.ms_gemm", "res.ms_bytes") else v) for k, v in sums.items()}
        # the model's features stacked as rows (what the numpy trees read), no [B, F] matrix
        cols = _feature_columns(sums, lat / batch, in_elems)
        r = self.raw_score(np.stack([cols[f] for f in self.features]))
        return lat * np.exp(np.clip(r, -self.max_abs_log, self.max_abs_log))

    # ------------------------------------------------------------------------------ plain data

    def to_dict(self) -> dict:
        d = {"kind": MODEL_KIND, "target": TARGET, "features": list(self.features),
             "max_abs_log": _check.plain(self.max_abs_log)}
        if self.trained:
            d["trained"] = self.trained
        d["model"] = self.model
        return d

    @classmethod
    def from_dict(cls, d, source=None, key="residual") -> "ResidualModel":
        _check.mapping(d, source, key, required=("kind", "features", "model"),
                       optional=("target", "trained", "max_abs_log"))
        _check.string(d["kind"], source, f"{key}.kind", (MODEL_KIND,))
        feats = d["features"]
        if not isinstance(feats, list) or not feats or not all(isinstance(f, str) for f in feats):
            raise _check.err(f"`{key}.features` must be a non-empty list of feature names", source, f"{key}.features")
        bad = [f for f in feats if f not in FEATURES]
        if bad:
            raise _check.err(f"`{key}.features` names unknown features {bad} (this augur-nas computes: "
                             f"{', '.join(FEATURES)})", source, f"{key}.features")
        model = d["model"]
        if not isinstance(model, str) or not model.startswith("tree"):
            raise _check.err(f"`{key}.model` must be a LightGBM text model (a string starting with `tree`)",
                             source, f"{key}.model")
        trained = d.get("trained") or {}
        if not isinstance(trained, dict):
            raise _check.err(f"`{key}.trained` must be a mapping", source, f"{key}.trained")
        cap = _check.number(d.get("max_abs_log", 1.0), source, f"{key}.max_abs_log")
        r = cls(model, feats, trained, cap)
        r._forest = parse_trees(model)  # parsed with the profile, not in the first evaluate
        try:
            nf = r.booster.num_feature()
        except AugurError:  # lightgbm missing (from _imports.optional)
            raise _check.err("the profile holds a LightGBM residual model but lightgbm is not installed "
                             "(pip install lightgbm)", source, f"{key}.model") from None
        except Exception as exc:  # noqa: BLE001 - LightGBM raises its own error types
            raise _check.err(f"`{key}.model` is not a valid LightGBM text model: {str(exc).splitlines()[0]}",
                             source, f"{key}.model") from None
        if nf != len(feats):
            raise _check.err(f"`{key}.model` takes {nf} features but `{key}.features` lists {len(feats)}",
                             source, f"{key}.model")
        return r

    def __eq__(self, other) -> bool:
        return isinstance(other, ResidualModel) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"ResidualModel({len(self.features)} features, {len(self.model):,} chars)"
