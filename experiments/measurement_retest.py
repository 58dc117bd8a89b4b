"""Test-retest of the measurement: the same networks measured by two `augur-nas validate` runs.

    augur-nas validate --device device_profiles/x86-2core-ort.yaml --space spaces/mobile.yaml \
        --space spaces/resnet.yaml --space spaces/nb201.yaml --samples 50 --seed 0 --rounds 16 \
        --json spaces/zoo/*.yaml > second.json
    python experiments/measurement_retest.py experiments/validate_ort.json second.json

Prints how far the two measurements of each network are apart (normalized to the profile's speed
by the anchors, and as timed), over all networks and over those both runs measured within the
noise limit: the noise floor any accuracy figure sits on.
"""

from __future__ import annotations

import json
import sys

import numpy as np


MEASURES = (("normalized to the profile's speed", "measured_ms"), ("as timed", "measured_raw_ms"))


def _rows(path):
    d = json.load(open(path))
    v = d.get("validation", d)
    return {r["label"]: r for r in v["networks"]}, v["summary"].get("max_noise", 0.05)


def retest_ratios(a: dict, b: dict, max_noise: float):
    """``(labels in both, clean mask, {measure name: second / first [labels]})`` of two
    validations' rows ``{label: row}``; clean: within the noise limit in both runs. A measure
    missing from some row (older reports have no ``measured_raw_ms``) is left out."""
    labs = [k for k in a if k in b]
    clean = np.array([a[k]["noise"] <= max_noise and b[k]["noise"] <= max_noise for k in labs], dtype=bool)
    ratios = {name: np.array([b[k][key] / a[k][key] for k in labs]) for name, key in MEASURES
              if all(key in a[k] and key in b[k] for k in labs)}
    return labs, clean, ratios


def main(a_path, b_path):
    a, max_noise = _rows(a_path)
    b, _ = _rows(b_path)
    labs, clean, ratios = retest_ratios(a, b, max_noise)
    print(f"{len(labs)} networks in both runs, {int(clean.sum())} measured within ±{100 * max_noise:.0f}% noise in both")
    for name, ratio in ratios.items():
        r = np.log(ratio)
        for tag, sel in (("all", np.ones(len(labs), dtype=bool)), ("clean in both", clean)):
            d = np.abs(np.exp(r[sel]) - 1)
            print(f"  {name:34s} {tag:14s} median ratio {np.exp(np.median(r[sel])):.3f}; |difference| median "
                  f"{100 * np.median(d):.1f}%, within 5%: {100 * np.mean(d <= 0.05):.0f}%, within 10%: "
                  f"{100 * np.mean(d <= 0.10):.0f}%")


if __name__ == "__main__":
    main(*sys.argv[1:3])
