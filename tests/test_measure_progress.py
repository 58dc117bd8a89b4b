"""measure: an estimate before it starts, status while it waits, a quick preset, noisy networks flagged."""

from augur_nas.measure._measure import NOISY, QUICK, estimate_s, noisy
from augur_nas.measure._protocol import time_runners


class _Runner:
    def __init__(self):
        self.n = 0

    def run(self):
        self.n += 1
        sum(range(2000))


def test_time_runners_says_its_estimate():
    said = []
    out = time_runners({"a": _Runner(), "b": _Runner()}, rounds=3, round_s=0.005, warmup_s=0.01, quiet=None,
                       status=said.append)
    assert set(out) == {"a", "b"}
    assert said and said[0].startswith("warm-up done; 3 rounds of 2 network(s) take about")


def test_noise_flag_and_quick_preset():
    assert noisy({"latency": {"noise": NOISY * 2}}) and not noisy({"latency": {"noise": NOISY / 2}})
    assert not noisy({"latency": {}}) and noisy({"latency": {"noise": float("nan")}})
    assert QUICK["rounds"] < 10 and QUICK["memory"] is False
    assert estimate_s(2, 10, 0.05, 0.2, True) > estimate_s(2, QUICK["rounds"], QUICK["round_s"], QUICK["warmup_s"], False)
