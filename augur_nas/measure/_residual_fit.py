"""``augur-nas fit-residual``: learn what the layer sum misses, from measured networks.

1. sample ``samples`` architectures of each space (``space.sample(n, seed)``; the seed must differ
   from the validation's, and every trained architecture is recorded by a hash so that
   ``validate`` can prove it never scores one of them);
2. measure them end to end with the ``measure`` protocol and the profile's runtime settings;
3. compute the layer-sum prediction and the architecture features of each (``costmodel._residual``)
   and the target ``log(measured / predicted)``;
4. cross-validate (k folds, out-of-fold predictions) the layer sum alone and the layer sum with
   the residual, and the MACs log-log baseline fitted on the same folds;
5. train on everything and store the booster in the profile as LightGBM's text model.

Networks whose own measurement noise exceeds ``max_noise`` are left out of the training (their
target is not known well enough) but counted in the report.

The machine's speed is taken out of the target, but not the layer sum's bias. A shared machine
runs faster or slower from one quarter of an hour to the next; the residual must learn how
architectures differ from the layer sum, not how fast the machine happened to be while its
training networks were measured. So the profile's speed anchors (fixed networks timed when the
profile was built, ``fit.anchors``) are measured again, interleaved with the training networks,
and ``session_offset = log(median(anchor now / anchor then))`` is subtracted from every target.
Centring the targets on their median instead (an earlier version) also took out the layer sum's
systematic error on a space (-15 % on MobileNet-style networks), which is what the residual is
for. A profile without anchors gets no offset. When the anchors are timed in every batch of
rounds (``measure_networks(references=...)``), each network's latency is normalized to the
profile's speed by its own batch's anchors, and no further offset is needed.
"""

from __future__ import annotations

import copy
import hashlib
import tempfile
from typing import NamedTuple

import numpy as np

from .._errors import MeasurementError
from .._imports import optional
from .._totals import input_elems
from ..analysis import totals
from ..costmodel import ResidualModel, residual_features, residual_sums
from ..lowering import lower
from ..space import SearchSpace
from ._measure import measure_networks
from ._metrics import accuracy, macs_loglog_fit, macs_loglog_predict
from ._profiling import anchor_speed, profile_anchors
from ._runners import prepare

LGB_PARAMS = {
    "objective": "huber", "alpha": 0.15, "learning_rate": 0.04, "num_leaves": 8, "min_data_in_leaf": 6,
    "feature_fraction": 0.8, "bagging_fraction": 0.85, "bagging_freq": 1, "lambda_l2": 1.0, "verbose": -1,
    "num_threads": 1, "deterministic": True, "force_col_wise": True,
}
NUM_ROUNDS = 300


def arch_hash(model) -> str:
    """A short hash of an architecture (its decoded YAML), to recognise it across runs. The YAML keeps
    the block names of before (``legacy_names``), so hashes stored in profiles still match."""
    text = (model.decode_yaml(np.zeros(model.n_genes, dtype=np.int64), legacy_names=True)
            if isinstance(model, SearchSpace) else str(model))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def residual_inputs(space, X, profile, batch: int = 1):
    """``(layer-sum latency [B], features [B, F], macs [B])`` of candidates ``X`` (reference path)."""
    model = profile.latency
    table = lower(space, X)
    fused = model.fused(table)
    st, n_reorder = model.slot_costs(table, batch, profile.name, fused=fused)
    base = st.sum(axis=0) + model.network_overhead_ms
    sums = residual_sums(table, model, st, fused, n_reorder)
    feats = residual_features(sums, base, input_elems(table))
    return base, feats, totals(table)["macs"]


def train_booster(F, y, w=None, seed: int = 0, rounds: int = NUM_ROUNDS) -> str:
    lgb = optional("lightgbm", "fitting a residual model", MeasurementError)
    params = dict(LGB_PARAMS, seed=seed)
    ds = lgb.Dataset(np.asarray(F, dtype=np.float64), label=np.asarray(y, dtype=np.float64), weight=w,
                     free_raw_data=True, params={"verbose": -1})
    booster = lgb.train(params, ds, num_boost_round=rounds)
    return booster.model_to_string()


def cross_validate(F, base, meas, macs, noise, folds: int = 5, seed: int = 0, max_noise: float = 0.05,
                   offset: float = 0.0) -> dict:
    """Out-of-fold accuracy of the layer sum, the layer sum + residual and the MACs baseline.

    ``offset`` is the session's log speed against the profile's (module docstring): taken out of
    the targets for training, put back for scoring, since the folds are scored against
    measurements of the same session."""
    F, base, meas, macs, noise = (np.asarray(v, dtype=np.float64) for v in (F, base, meas, macs, noise))
    n = len(meas)
    rng = np.random.default_rng(seed)
    fold = rng.permutation(n) % max(2, min(folds, n))
    corrected = np.empty(n)
    macs_pred = np.empty(n)
    clean = noise <= max_noise
    for f in np.unique(fold):
        tr, te = (fold != f) & clean, fold == f
        if tr.sum() < 5:
            corrected[te] = base[te]
            macs_pred[te] = base[te]
            continue
        y = np.log(meas[tr] / base[tr])
        r = ResidualModel(train_booster(F[tr], y - offset, seed=seed))
        corrected[te] = base[te] * np.exp(r.log_ratio(F[te]) + offset)
        macs_pred[te] = macs_loglog_predict(macs_loglog_fit(macs[tr], meas[tr]), macs[te])
    out = {}
    for tag, sel in (("clean", clean), ("all", np.ones(n, dtype=bool))):
        out[tag] = {"layer_sum": accuracy(base[sel], meas[sel]),
                    "layer_sum_with_residual": accuracy(corrected[sel], meas[sel]),
                    "macs_loglog": accuracy(macs_pred[sel], meas[sel])}
    out["folds"] = int(len(np.unique(fold)))
    out["max_noise"] = max_noise
    out["clean_networks"] = int(clean.sum())
    out["networks"] = int(n)
    return out


def fit_residual(profile, spaces, samples: int, seed: int, settings, progress=None, rounds: int = 8,
                 max_noise: float = 0.05, folds: int = 5, round_s: float = 0.03, spread_s: float = 0.0,
                 retries: int = 1, measurements: dict | None = None, max_wait_s: float = 300.0):
    """Measure ``samples`` candidates of each ``(path, space[, n])``, cross-validate and train the
    residual. ``measurements`` (from a previous run's report, ``report["measurements"]``) skips the
    measuring: the same architectures are looked up by space and encoding.
    Returns ``(profile with the residual, report)``; the report's ``measurements`` can be saved
    and given back."""
    say = progress or (lambda m: None)
    total = sum(e[2] if len(e) > 2 else samples for e in spaces)
    if total < 10:
        raise MeasurementError(f"a residual needs at least 10 training networks, got {total}")
    base_profile = _without_residual(profile)
    items, per_space = [], []
    for entry in spaces:
        path, space = entry[0], entry[1]
        n_samples = entry[2] if len(entry) > 2 else samples
        X = space.sample(n_samples, seed=seed)
        b, f, mc = residual_inputs(space, X, base_profile, settings.batch)
        per_space.append((path, space, X, b, f, mc))
        for i, x in enumerate(X):
            items.append((f"{space.name}[{i}]", space, x))
    keys = [f"{sp.name}:{','.join(map(str, x.tolist()))}" for _, sp, x in items]
    anchors_ref, anchor_items = profile_anchors(profile)
    anchor_keys = [f"anchor:{lab}" for lab, _ in anchor_items]
    if measurements is None:
        measurements = _measure(items, keys, per_space, anchor_items, anchors_ref, anchor_keys, settings, say, seed,
                                rounds=rounds, round_s=round_s, spread_s=spread_s, max_noise=max_noise,
                                retries=retries, max_wait_s=max_wait_s)
    speed = session_speed(measurements, anchors_ref)
    normalized = all(measurements.get(k, {}).get("normalized") for k in keys)
    offset = float(np.log(speed["ratio_now_to_profile"])) if speed and not normalized else 0.0
    if normalized:
        say("latencies normalized to the profile's speed by the anchors timed in every batch")
    elif speed:
        say(f"speed anchors: the machine runs {100 * (speed['ratio_now_to_profile'] - 1):+.1f}% against the profile's "
            f"session; taken out of the residual's targets")
    missing = [k for k in keys if k not in measurements]
    if missing:
        raise MeasurementError(f"the saved measurements lack {len(missing)} of the {len(keys)} sampled architectures "
                               f"(other spaces, samples or seed?), e.g. {missing[0]}")
    ts = _training_set(per_space, keys, items, measurements)
    F, base, meas_a, noise_a, macs_a, hashes, labels, tags = ts
    say(f"cross-validating ({folds} folds) on {len(meas_a)} networks")
    cv = cross_validate(F, base, meas_a, macs_a, noise_a, folds=folds, seed=seed, max_noise=max_noise, offset=offset)
    clean = noise_a <= max_noise
    if clean.sum() < 5:
        raise MeasurementError(f"only {int(clean.sum())} of {len(clean)} networks were measured with noise within "
                               f"{max_noise:.0%}; the machine is too noisy to train a residual now")
    y = np.log(meas_a[clean] / base[clean])
    model_str = train_booster(F[clean], y - offset, seed=seed)
    macs_coef = macs_loglog_fit(macs_a[clean], meas_a[clean])
    trained = {
        "spaces": [e[0] for e in spaces], "samples_per_space": {e[0]: int(e[2] if len(e) > 2 else samples) for e in spaces},
        "seed": int(seed),
        "networks": int(len(meas_a)), "used": int(clean.sum()), "max_noise": max_noise,
        "params": {k: v for k, v in LGB_PARAMS.items() if k not in ("verbose", "num_threads", "force_col_wise")},
        "rounds": NUM_ROUNDS,
        "session_offset": round(offset, 4),
        "session_speed": speed,
        "normalized": bool(normalized),
        "cross_validation": _round(cv),
        "macs_loglog": {"a": macs_coef[0], "b": macs_coef[1],
                        "note": "log(ms) = a + b log(MACs), fitted on the same networks (the MACs baseline)"},
        "architectures": sorted(set(hashes)),
    }
    residual = ResidualModel(model_str, trained=trained)
    out = copy.copy(profile)
    out.residual = residual
    report = {"cv": cv, "labels": labels, "spaces": tags, "measured_ms": meas_a.tolist(), "noise": noise_a.tolist(),
              "layer_sum_ms": base.tolist(), "macs": macs_a.tolist(), "measurements": measurements}
    return out, report


def _measure(items, keys, per_space, anchor_items, anchors_ref, anchor_keys, settings, say, seed, rounds, round_s,
             spread_s, max_noise, retries, max_wait_s) -> dict:
    """Measure the sampled networks and the speed anchors; ``{key: measurement}``."""
    with tempfile.TemporaryDirectory(prefix="augur-residual-") as d:
        say(f"exporting {len(items)} sampled networks ({', '.join(p for p, *_ in per_space)}; seed {seed})"
            + (f" and {len(anchor_items)} speed anchors" if anchor_items else ""))
        nets = prepare([(lab, sp.decode(x)) for lab, sp, x in items] + anchor_items, d)
        res = measure_networks(nets, settings, rounds=rounds, round_s=round_s, warmup_s=0.05, spread_s=spread_s,
                               memory=False, progress=say, seed=seed, retry_noise=max_noise, retries=retries,
                               max_wait_s=max_wait_s,
                               references={n.label: anchors_ref[n.label] for n in nets[len(items):]})
    measurements = {}
    for k, r in zip(keys + anchor_keys, res):
        lat = r["latency"]
        norm = lat.get("normalized_ms") if not k.startswith("anchor:") else None
        measurements[k] = {"median_ms": norm or lat["median_ms"], "raw_ms": lat["median_ms"],
                           "normalized": bool(norm), "speed": lat.get("speed"), "noise": lat["noise"],
                           "rounds": lat["round_medians_ms"]}
    return measurements


class _TrainingSet(NamedTuple):
    """The training networks in order: features, layer-sum and measured ms, noise, MACs, and each
    one's architecture hash, label and space."""
    F: np.ndarray
    base: np.ndarray
    meas: np.ndarray
    noise: np.ndarray
    macs: np.ndarray
    hashes: list
    labels: list
    tags: list


def _training_set(per_space, keys, items, measurements) -> _TrainingSet:
    """The sampled networks with their measurements, looked up by key."""
    bases, feats, macs, meas, noise, hashes, labels, tags = [], [], [], [], [], [], [], []
    j = 0
    for path, space, X, b, f, mc in per_space:
        for i in range(len(X)):
            m = measurements[keys[j]]
            bases.append(b[i])
            feats.append(f[i])
            macs.append(mc[i])
            meas.append(m["median_ms"])
            noise.append(m["noise"])
            hashes.append(arch_hash(space.decode(X[i])))
            labels.append(items[j][0])
            tags.append(path)
            j += 1
    return _TrainingSet(np.asarray(feats), np.asarray(bases), np.asarray(meas),
                        np.nan_to_num(np.asarray(noise, dtype=np.float64), nan=1.0), np.asarray(macs),
                        hashes, labels, tags)


def session_speed(measurements: dict, anchors_ref: dict) -> dict | None:
    """The machine's speed now against the profile's session, from the anchors' measurements
    (``measurements["anchor:<label>"]``); None without anchors."""
    sp = anchor_speed({k.split(":", 1)[1]: m["median_ms"] for k, m in measurements.items() if k.startswith("anchor:")},
                      anchors_ref)
    if sp is None:
        return None
    ratio, ratios = sp
    return {"ratio_now_to_profile": ratio,
            "anchors": {k: round(float(v), 4) for k, v in ratios.items()},
            "note": "median over the speed anchors of (latency now / latency when the profile was built)"}


def _without_residual(profile):
    p = copy.copy(profile)
    p.residual = None
    return p


def _round(v):
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    if isinstance(v, float):
        return round(v, 4) if np.isfinite(v) else None
    return v
