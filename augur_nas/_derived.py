"""What is computed once per compiled program and kept: one record, in one place.

A ``Program`` (``space._compile``) is the unrolled space, immutable once compiled. The lowering,
the totals and the segment tabulation derive static facts from it (which slots need their
pass-through shape, which share their input's buffer, the segments, ...) and keep them for the
next call. They all live in the one ``Derived`` record that ``derived(prog)`` returns, never as
attributes set on the program by several modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Derived:
    """The static facts of one program, each filled in by the module that computes it."""

    static: object = None  # lowering._static_info: names, ops, types, inputs, pass-through flags
    buffers: object = None  # _totals.BufferFacts: buffer sharing and optional contexts per slot
    segments: object = None  # _segments.segments: the chain of segments
    merged: dict = field(default_factory=dict)  # (start, stop) -> _segments.Segment of merged runs
    signatures: dict = field(default_factory=dict)  # (start, stop) -> _segments._signature
    input_states: object = None  # _segments.InputStates of the network input
    option_counts: object = None  # _segments._option_counts: each gene's option count
    live_genes: object = None  # _segments._live_genes: boundary node -> genes tracked there (_reach)


def derived(prog) -> Derived:
    """The ``Derived`` record of ``prog`` (made empty on first use)."""
    d = prog.__dict__.get("_derived")
    if d is None:
        d = prog.__dict__["_derived"] = Derived()
    return d
