"""Deployment planning on top of the oracle: which device runs a model (``fit``) and where to
split a network between a device and a server (the split's core, ``augur_nas._split``, sits below
the oracle, which prices a batch's splits with it)."""

from .._split import Link, SplitPoint, parse_bandwidth, parse_rtt, split_latency, split_points
from ._fit import DeviceFit, FitReport, SpaceFit, fit

__all__ = ["DeviceFit", "FitReport", "SpaceFit", "fit", "Link", "SplitPoint", "parse_bandwidth", "parse_rtt",
           "split_latency", "split_points"]
