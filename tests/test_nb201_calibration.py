"""Issue 11: `augur-nas profile` profiles samples of the NAS-Bench-201 space (seed 1) among its
random calibration networks, one after each batch of six; never the validation's seed-0 samples."""

from __future__ import annotations

import numpy as np

from augur_nas import nb201
from augur_nas.lowering import lower
from augur_nas.measure import _profiling as P
from augur_nas.measure._settings import RuntimeSettings
from augur_nas.models import load_space_dict


def test_nb201_samples_relower_from_their_specs_and_are_not_the_validation_samples():
    got = P.nb201_samples(P.NB201_SAMPLES)
    assert len(got) == P.NB201_SAMPLES >= 3
    space = nb201.space()
    validation = {tuple(x) for x in space.sample(30, seed=0)}
    ours = {tuple(x) for x in space.sample(P.NB201_SAMPLES, seed=P.NB201_SEED)}
    assert P.NB201_SEED != 0 and not (ours & validation)
    for label, model, spec in got:
        assert label.endswith("_nb201")
        again = load_space_dict(spec, source="<t>")  # as fit_ort lowers the calibration networks again
        a = lower(model, np.zeros((1, 0), dtype=np.int64))
        b = lower(again, np.zeros((1, again.n_genes), dtype=np.int64))
        assert a.ops == b.ops and a.names == b.names


def test_phase_c_profiles_one_nb201_sample_after_each_batch(monkeypatch):
    seen = []

    def fake(acc, label, model, spec, *rest):
        seen.append(label)
        acc.nets.append(label)

    monkeypatch.setattr(P, "_profile_network", fake)
    acc = P._NodeProfiles()
    P._profile_calibration_networks(acc, RuntimeSettings(), P.Budget(1e6), np.random.default_rng(0), None, "/nonexistent",
                                    None, 24, 1.5e9)
    assert len(seen) == 24
    # each batch: six random networks, one NB-201 sample, one ImageNet-scale ResNet
    assert [i for i, lab in enumerate(seen) if lab.endswith("_nb201")] == [6, 14, 22]
    assert [i for i, lab in enumerate(seen) if lab.startswith("large")] == [7, 15, 23]
    assert all(lab.startswith("calib") for lab in seen if not lab.endswith("_nb201") and not lab.startswith("large"))
