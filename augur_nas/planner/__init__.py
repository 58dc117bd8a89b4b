"""Deployment planning on top of the cost model: where to split a network between a device and a server."""

from ._split import Link, SplitPoint, parse_bandwidth, parse_rtt, split_latency, split_points

__all__ = ["Link", "SplitPoint", "parse_bandwidth", "parse_rtt", "split_latency", "split_points"]
