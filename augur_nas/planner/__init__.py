"""Deployment planning on top of the oracle: which device runs a model (``fit``)."""

from ._fit import DeviceFit, FitReport, SpaceFit, fit

__all__ = ["DeviceFit", "FitReport", "SpaceFit", "fit"]
