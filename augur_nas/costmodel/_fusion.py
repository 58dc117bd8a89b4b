"""Graph fusion: which layers a runtime folds into the kernel that produces their input.

A modern runtime does not run a network layer by layer. ONNX Runtime (CPU, ``ORT_ENABLE_ALL``)
folds a BatchNorm into the weights of the convolution before it, runs the activation that
follows inside the convolution kernel, and adds a residual input inside it too: ``conv -> bn
-> add -> relu`` is one kernel. A profile measured on such a runtime prices the fused kernel
with the producing layer's model; the layers folded into it cost nothing of their own.

The rules are data (``latency.fuse`` of a profile): a list of groups, each

    {into: [conv, dwconv], fold: [batchnorm, scale], join: [add], act: [relu, relu6, ...]}

read as the chain grammar ``producer fold* [join] [act]``: after a producer of ``into`` the
runtime absorbs any number of ``fold`` layers, then at most one two-input ``join`` (the other
input is added inside the kernel), then at most one ``act``. Each absorbed layer must be the
only reader of the tensor before it. ``select``, ``identity`` and ``dropout`` are transparent
(no kernel of their own); a ``select`` resolves per candidate, so the result is ``[L, B]``.
"""

from __future__ import annotations

import numpy as np

from . import _check

TRANSPARENT = ("select", "identity", "dropout")
_KEYS = ("into", "fold", "join", "act")
# chain stages: -1 none, 0 after the producer or a fold, 1 after the join, 2 closed (after the act)
_NONE, _OPEN, _JOINED, _CLOSED = -1, 0, 1, 2


class FusionRules:
    """Groups of ``{into, fold, join, act}`` op-kind lists (see the module docstring)."""

    def __init__(self, groups=()):
        self.groups = []
        for g in groups:
            self.groups.append({k: tuple(str(x) for x in g.get(k, ())) for k in _KEYS})
        self._producer = {}
        for gi, g in enumerate(self.groups):
            for kind in g["into"]:
                self._producer.setdefault(kind, gi)

    def __bool__(self) -> bool:
        return bool(self.groups)

    # ------------------------------------------------------------------------------ analysis

    def chain_stages(self, ops, inputs, mask, select_pos=None, entry=None):
        """Fusion of every slot of a table's structure.

        ``ops``/``inputs``: per slot (inputs are slot indices, -1 the tensor entering the table);
        ``mask`` ``[L, B]``; ``select_pos``: select slot -> ``[B]`` chosen input position;
        ``entry``: ``(stage, group, readers)`` of the entering tensor (default: not a chain).
        Returns ``(fused [L, B] bool, stage [L, B] int8, group [L, B] int16)``.
        """
        L = len(ops)
        B = mask.shape[1] if L else 0
        fused = np.zeros((L, B), dtype=bool)
        stage = np.full((L, B), _NONE, dtype=np.int8)
        group = np.full((L, B), -1, dtype=np.int16)
        if not self.groups or L == 0:
            return fused, stage, group
        readers = np.zeros(L + 1, dtype=np.int64)  # index i + 1; 0 is the entry
        for s in range(L):
            for i in set(inputs[s]):
                readers[i + 1] += 1
        e_stage, e_group, e_readers = entry if entry is not None else (_NONE, -1, 0)
        if entry is not None:
            readers[0] = e_readers
        ent_stage = np.full(B, e_stage, dtype=np.int8)
        ent_group = np.full(B, e_group, dtype=np.int16)

        def st(i):
            return (ent_stage, ent_group) if i < 0 else (stage[i], group[i])

        for s in range(L):
            op = ops[s]
            ins = inputs[s]
            act = mask[s]
            if op in TRANSPARENT:
                if op == "select" and select_pos is not None and s in select_pos and len(ins) > 1:
                    pos = np.asarray(select_pos[s])
                    cand_stage = np.stack([st(i)[0] for i in ins])
                    cand_group = np.stack([st(i)[1] for i in ins])
                    one = np.array([readers[i + 1] == 1 for i in ins])[pos]
                    cols = np.arange(B)
                    stage[s] = np.where(one, cand_stage[pos, cols], _NONE)
                    group[s] = np.where(one, cand_group[pos, cols], -1)
                else:
                    s0, g0 = st(ins[0])
                    one = readers[ins[0] + 1] == 1
                    stage[s] = s0 if one else _NONE
                    group[s] = g0 if one else -1
                continue
            gi = self._producer.get(op)
            if gi is not None:
                stage[s] = np.where(act, _OPEN, _NONE)
                group[s] = np.where(act, gi, -1)
            # absorbed into the chain of an input?
            if len(ins) == 1 and op not in self._producer:
                i = ins[0]
                if readers[i + 1] == 1:
                    s0, g0 = st(i)
                    ok_fold = self._allowed(op, "fold", g0) & (s0 == _OPEN)
                    ok_act = self._allowed(op, "act", g0) & ((s0 == _OPEN) | (s0 == _JOINED))
                    f = act & (ok_fold | ok_act)
                    fused[s] = f
                    stage[s] = np.where(f, np.where(ok_fold, _OPEN, _CLOSED), stage[s])
                    group[s] = np.where(f, g0, group[s])
            elif len(ins) == 2 and op not in self._producer:
                f = np.zeros(B, dtype=bool)
                g = np.full(B, -1, dtype=np.int16)
                for i in ins:
                    if readers[i + 1] != 1:
                        continue
                    s0, g0 = st(i)
                    ok = self._allowed(op, "join", g0) & (s0 == _OPEN) & ~f
                    g = np.where(ok, g0, g)
                    f |= ok
                f &= act
                fused[s] = f
                stage[s] = np.where(f, _JOINED, stage[s])
                group[s] = np.where(f, g, group[s])
            if not (act is True or np.all(act)):
                # an inactive slot passes its first input through
                s0, g0 = st(ins[0])
                off = ~np.asarray(act, dtype=bool)
                stage[s] = np.where(off, s0, stage[s])
                group[s] = np.where(off, g0, group[s])
                fused[s] &= ~off
        return fused, stage, group

    def _allowed(self, op, key, g):
        """Per candidate: does group ``g`` (an ``[B]`` array, -1 none) absorb ``op`` as ``key``?"""
        ok = np.zeros(len(self.groups) + 1, dtype=bool)
        for gi, grp in enumerate(self.groups):
            ok[gi] = op in grp[key]
        return ok[np.asarray(g, dtype=np.int64)]  # index -1 is the trailing False

    def program_entry_states(self, prog) -> dict:
        """``node -> (stage, group, readers)`` of every node of a program (candidate-independent
        where no ``select`` decides; a ``select`` is not a chain here), for the fast path's
        segments, which see the tensor entering them only as an input ``-1``."""
        cache = getattr(prog, "_fusion_states", None)
        key = repr(self.groups)
        if cache is not None and cache[0] == key:
            return cache[1]
        nodes = prog.nodes
        ops = [n.op for n in nodes]
        inputs = [list(n.inputs) for n in nodes]
        mask = np.ones((len(nodes), 1), dtype=bool)
        _, stage, group = self.chain_stages(ops, inputs, mask)
        readers = {}
        for n in nodes:
            for i in set(n.inputs):
                readers[i] = readers.get(i, 0) + 1
        states = {i: (int(stage[i, 0]), int(group[i, 0]), readers.get(i, 0)) for i in range(len(nodes))}
        prog._fusion_states = (key, states)
        return states

    # ------------------------------------------------------------------------------ plain data

    def to_list(self) -> list:
        return [{k: list(g[k]) for k in _KEYS if g[k]} for g in self.groups]

    @classmethod
    def from_list(cls, v, source=None, key="latency.fuse", known_kinds=()) -> "FusionRules":
        if not isinstance(v, list):
            raise _check.err(f"`{key}` must be a list of {{into, fold, join, act}} groups, not {_check._kind(v)}",
                             source, key)
        groups = []
        for gi, g in enumerate(v):
            k = f"{key}[{gi}]"
            _check.mapping(g, source, k, required=("into",), optional=("fold", "join", "act"))
            grp = {}
            for part in _KEYS:
                vals = g.get(part, [])
                if not isinstance(vals, list) or not all(isinstance(x, str) for x in vals):
                    raise _check.err(f"`{k}.{part}` must be a list of op kinds", source, f"{k}.{part}")
                for x in vals:
                    if known_kinds and x not in known_kinds:
                        raise _check.err(f"`{k}.{part}`: `{x}` is not an op kind (known: {', '.join(sorted(known_kinds))})",
                                         source, f"{k}.{part}")
                grp[part] = vals
            groups.append(grp)
        return cls(groups)

    def __eq__(self, other) -> bool:
        return isinstance(other, FusionRules) and self.to_list() == other.to_list()

    def __repr__(self) -> str:
        return f"FusionRules({self.to_list()})"
