"""SearchSpace: genes, size, sampling, enumeration, canonical encodings, decode/encode."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
import yaml

from .._errors import SpecError
from ._compile import Compiler, Prod, Program, TAlt, TStage, TVal

ENUMERATE_LIMIT = 10**7


@dataclass(frozen=True)
class GeneInfo:
    name: str
    options: tuple

    @property
    def size(self) -> int:
        return len(self.options)


#: ``parse(space, text) -> encoding or None``: notations of candidates other than gene=value,
#: registered by the modules that know them (augur_nas.nb201), so this module imports none of them
TEXT_ENCODERS: list = []


class SearchSpace:
    """A family of CNNs; a concrete model is a space of size 1.

    Candidates are integer encodings ``X[B, G]``: ``X[i, g]`` indexes the options of gene ``g``.
    """

    def __init__(self, spec: dict, source: str = "<spec>"):
        self.spec = spec
        self.source = source
        self.program: Program = Compiler(source).compile(spec)
        self.name = self.program.name or _stem(source)
        prog = self.program
        self.genes = [GeneInfo(g.name, g.options) for g in prog.genes]
        self._sizes = np.array([g.size for g in self.genes], dtype=np.int64)
        # canonicalisation tables: for gene g, [(other gene, allowed[options] bool)]
        self._conds = []
        for g in prog.genes:
            tabs = []
            for cg, allowed in g.conds:
                t = np.zeros(prog.genes[cg].size, dtype=bool)
                t[list(allowed)] = True
                tabs.append((cg, t))
            self._conds.append(tabs)

    # -- basic facts --------------------------------------------------------------------------
    @property
    def n_genes(self) -> int:
        return len(self.genes)

    @property
    def gene_names(self) -> list[str]:
        return [g.name for g in self.genes]

    @property
    def gene_labels(self) -> list[str]:
        """Gene names with each named stage's key path (``layers[3].stage``) replaced by the name the
        YAML gave it (``s3``): ``s3[1].mbconv.kernel``, ``s3.depth``.  ``encode`` accepts either form;
        the key-path names stay the genes' names (stored studies use them)."""
        prefixes = {}
        for i, entry in enumerate(self.spec.get("layers") or [] if isinstance(self.spec, dict) else []):
            body = entry.get("stage") if isinstance(entry, dict) else None
            if isinstance(body, dict) and isinstance(body.get("name"), str):
                prefixes[f"layers[{i}].stage"] = body["name"]
        out = []
        for g in self.genes:
            key = next((k for k in prefixes if g.name.startswith(k) and g.name[len(k):len(k) + 1] in (".", "[")), None)
            out.append(prefixes[key] + g.name[len(key):] if key else g.name)
        return out

    @property
    def size(self) -> int:
        """The exact number of distinct canonical encodings (architectures)."""
        return _count(self.program.tree)

    @property
    def is_model(self) -> bool:
        return self.size == 1

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, genes={self.n_genes}, size={self.size:.3g})"

    # -- encodings ------------------------------------------------------------------------------
    def canonicalize(self, X) -> np.ndarray:
        """Normalise genes that do not matter for a candidate to 0 (one architecture, one code)."""
        X = self.check_encodings(X).copy()
        for g, tabs in enumerate(self._conds):
            if not tabs:
                continue
            active = np.ones(len(X), dtype=bool)
            for cg, t in tabs:
                active &= t[X[:, cg]]
            X[~active, g] = 0
        return X

    def check_encodings(self, X, values: bool = True) -> np.ndarray:
        """``X`` as int64 ``[B, G]`` encodings; raises SpecError naming the first bad candidate.
        Without ``values`` only the shape and type are checked (the caller checks the options,
        ``_segments.gene_rows``)."""
        X = np.asarray(X)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.n_genes:
            raise SpecError(f"encodings of {self.name} must have shape [B, {self.n_genes}], but got {list(X.shape)}"
                            f" ({self.source})")
        if X.size and not np.issubdtype(X.dtype, np.integer):
            raise SpecError(f"encodings must be integers, but got dtype {X.dtype} ({self.source})")
        # one pass: read as unsigned, a negative gene is larger than any option count
        u = X.view(X.dtype.str.replace("i", "u")) if X.dtype.kind == "i" else X
        if values and X.size and (column_max(u) >= self._sizes.astype(u.dtype)).any():
            sizes = self._sizes
            bad = (X < 0) | (X >= sizes[None, :])
            if bad.any():
                i, g = map(int, np.argwhere(bad)[0])
                raise SpecError(f"gene `{self.genes[g].name}` of candidate {i} must be in 0..{sizes[g] - 1}, "
                                f"but got {int(X[i, g])} ({self.source})")
        return X.astype(np.int64, copy=False)

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """``n`` random canonical encodings (each gene drawn uniformly), shape ``[n, G]``."""
        rng = np.random.default_rng(seed)
        sizes = np.array([g.size for g in self.genes], dtype=np.int64)
        X = (rng.random((int(n), self.n_genes)) * sizes[None, :]).astype(np.int64)
        return self.canonicalize(X)

    def enumerate(self, limit: int = ENUMERATE_LIMIT) -> np.ndarray:
        """Every canonical encoding, for spaces of at most ``limit`` architectures."""
        if self.size > limit:
            raise SpecError(f"{self.name} has {self.size:.3g} architectures, more than the {limit:,} that "
                            f"can be enumerated; sample instead ({self.source})")
        return _rows(self.program.tree, self.n_genes)

    def encode(self, choices: dict | None = None) -> np.ndarray:
        """The canonical encoding of ``{gene name: option value}`` (unnamed genes take option 0)."""
        x = np.zeros(self.n_genes, dtype=np.int64)
        index = {g.name: i for i, g in enumerate(self.genes)}
        index.update({label: i for i, label in enumerate(self.gene_labels)})
        for name, value in (choices or {}).items():
            if name not in index:
                raise SpecError(f"{self.name} has no gene `{name}` (genes: {', '.join(self.gene_labels) or 'none'})"
                                f" ({self.source})")
            opts = self.genes[index[name]].options
            matches = [i for i, o in enumerate(opts) if o == value and type(o) is type(value)] or \
                      [i for i, o in enumerate(opts) if o == value]
            if not matches:
                raise SpecError(f"gene `{name}` has no option {value!r} (options: {list(opts)}) ({self.source})")
            x[index[name]] = matches[0]
        return self.canonicalize(x)[0]

    def encode_text(self, text: str) -> np.ndarray:
        """``encode`` of ``"gene=value,gene=value"`` (values read as YAML scalars: ``5``, ``0.25``, ``relu``);
        an NB201 architecture string for the NB201 space."""
        for parse in TEXT_ENCODERS:  # other notations (augur_nas.nb201 registers its strings)
            x = parse(self, text)
            if x is not None:
                return self.canonicalize(x)[0]
        choices = {}
        for part in _split_choices(str(text)):
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise SpecError(f"`{part}` must be written gene=value (e.g. {self.gene_labels[0] if self.genes else 'gene'}"
                                f"=...), choices separated by commas ({self.source})")
            try:
                v = yaml.safe_load(value.strip())
            except yaml.YAMLError:
                v = value.strip()
            choices[name.strip()] = v
        return self.encode(choices)

    # -- decode -----------------------------------------------------------------------------------
    def decode_spec(self, x, legacy_names: bool = False) -> dict:
        """The concrete model of encoding ``x`` as a dict in the augur-nas language. Stage blocks are
        named ``b0``, ``b1``, ... (``legacy_names``: as before, every copy ``mbconv0``; see ``name_blocks``)."""
        x = self.canonicalize(x)[0]
        prog = self.program
        spec = _materialize(prog.template, x, prog)
        spec = {k: v for k, v in spec.items() if v not in (None, {}, [])}
        name_blocks(spec.get("layers"), legacy=legacy_names)
        if prog.cells:
            spec["cells"] = {}
            for cname, c in prog.cells.items():
                d = c["def"]
                edges = {}
                for j in range(1, d["nodes"]):
                    for i in range(j):
                        key = f"{j}<-{i}"
                        g = c["genes"].get(key)
                        if g is not None:
                            edges[key] = prog.genes[g].raw_options[x[g]]
                        else:
                            e = d.get("edges", {}).get(key, d.get("edge")) if isinstance(d.get("edges"), dict) else d.get("edge")
                            edges[key] = e["choice"][0] if isinstance(e, dict) and set(e) == {"choice"} else e
                spec["cells"][cname] = {"nodes": d["nodes"], "edges": edges}
        spec.setdefault("name", self.name)
        order = ["name", "input", "width_multiplier", "width_divisor", "cells", "layers"]
        return {k: spec[k] for k in order if k in spec}

    def decode_yaml(self, x, legacy_names: bool = False) -> str:
        return yaml.safe_dump(self.decode_spec(x, legacy_names), sort_keys=False, default_flow_style=None, width=100)

    def decode(self, x) -> "SearchSpace":
        """The concrete model of encoding ``x`` (a space of size 1)."""
        return SearchSpace(self.decode_spec(x), source=f"{self.source}#candidate")


_AUTO_BLOCK = re.compile(r"[a-z_0-9]+0|choice0\.\d+")  # the compiler's names of an unnamed block of a stage


def name_blocks(layers, legacy: bool = False) -> None:
    """Name the blocks of every stage in a decoded layer list (in place) by their index: ``b0``,
    ``b1``, ... (the compiler then names block 1 of stage ``s3`` ``s3.b1``). Only names the compiler
    made up are replaced (every copy of an unnamed block is ``mbconv0``); names the YAML gave stay,
    and so does a stage whose layers another layer's ``inputs`` names.

    ``legacy=True`` undoes it (``b1`` of an ``mbconv`` back to ``mbconv0``): the text architecture
    hashes were taken of before, so stored hashes (a residual's training set) still match."""
    refs = _input_refs(layers)
    for entry in layers or []:
        op, body = _op_body(entry)
        if op == "stage" and isinstance(body.get("blocks"), list):
            stage = body.get("name")
            if not any(r.startswith(f"{stage}.") for r in refs):
                for i, block in enumerate(body["blocks"]):
                    _rename_block(block, i, legacy)
            for block in body["blocks"]:
                name_blocks([block], legacy)
        elif isinstance(body.get("layers"), list):  # a sequence (a chosen alternative)
            name_blocks(body["layers"], legacy)


def _op_body(entry):
    if isinstance(entry, dict) and len(entry) == 1:
        op, body = next(iter(entry.items()))
        if isinstance(body, dict):
            return op, body
    return None, {}


def _rename_block(block, i: int, legacy: bool) -> None:
    op, body = _op_body(block)
    name = body.get("name")
    if not isinstance(name, str):
        return
    if not legacy and _AUTO_BLOCK.fullmatch(name) and (name == f"{op}0" or op == "sequence"):
        body["name"] = f"b{i}"
    elif legacy and name == f"b{i}" and op != "sequence":
        body["name"] = f"{op}0"


def _input_refs(tree) -> set:
    """Every layer name an ``inputs`` list anywhere in ``tree`` refers to."""
    out = set()
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k == "inputs" and isinstance(v, list):
                out.update(r for r in v if isinstance(r, str))
            else:
                out |= _input_refs(v)
    elif isinstance(tree, list):
        for v in tree:
            out |= _input_refs(v)
    return out


def _split_choices(text: str) -> list:
    """Split ``a=1,b[2].c=3`` at the commas outside brackets (gene names hold ``[i]``)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[("
        depth -= ch in "])"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def _stem(path: str) -> str:
    base = os.path.basename(str(path)).split("#")[0]
    return base.rsplit(".", 1)[0] if "." in base else base


def _count(t) -> int:
    if t is None:
        return 1
    if isinstance(t, Prod):
        n = 1
        for c in t.children:
            n *= _count(c)
        return n
    return sum(_count(b) for b in t.branches)


def _rows(t, G: int) -> np.ndarray:
    if t is None:
        return np.zeros((1, G), dtype=np.int64)
    if isinstance(t, Prod):
        acc = np.zeros((1, G), dtype=np.int64)
        for c in t.children:
            r = _rows(c, G)
            acc = (acc[:, None, :] + r[None, :, :]).reshape(len(acc) * len(r), G)
        return acc
    parts = []
    for o, b in enumerate(t.branches):
        r = _rows(b, G)
        r[:, t.gene] = o
        parts.append(r)
    return np.concatenate(parts, axis=0)


def _materialize(t, x, prog):
    if isinstance(t, TVal):
        return prog.genes[t.gene].raw_options[x[t.gene]]
    if isinstance(t, TStage):
        depth = _materialize(t.depth, x, prog) if isinstance(t.depth, TVal) else t.depth
        return {"stage": {"name": t.name, "blocks": [_materialize(c, x, prog) for c in t.copies[: int(depth)]]}}
    if isinstance(t, TAlt):
        a = int(x[t.gene])
        return {"sequence": {"name": f"{t.name}.{a}", "layers": [_materialize(e, x, prog) for e in t.alts[a]]}}
    if isinstance(t, dict):
        return {k: _materialize(v, x, prog) for k, v in t.items()}
    if isinstance(t, list):
        return [_materialize(v, x, prog) for v in t]
    return t


MAX_ROWS_TOGETHER = 64  # rows of the encodings read as one wide row by ``column_max``


def column_max(u: np.ndarray) -> np.ndarray:
    """``u.max(axis=0)`` of a ``[B, G]`` array, the same values about twice as fast: numpy reduces
    along axis 0 one row (G elements, a few dozen genes) at a time, so a C-contiguous batch is
    read as rows of MAX_ROWS_TOGETHER encodings (long vector steps), and the partial maxima folded."""
    B, G = u.shape
    k = MAX_ROWS_TOGETHER
    m = B - B % k
    if m == 0 or not u.flags.c_contiguous:
        return u.max(axis=0)
    top = u[:m].reshape(m // k, k * G).max(axis=0).reshape(k, G).max(axis=0)
    return np.maximum(top, u[m:].max(axis=0)) if m < B else top
