"""The op table: every fact about an op kind, in one record per kind.

A compiled space's layers carry an op kind (``Node.op``); everything that the lowering, the
analysis, the cost models and the residual need to know about a kind *besides* how its shape and
counts are computed (``lowering``'s handlers) is written here, once. As fvcore's
``_DEFAULT_SUPPORTED_OPS``, the table is the policy: a kind that is not in it is reported as
unsupported (``UnsupportedOpError`` at lowering), never dropped or priced as zero.

The policy, field by field (``OpKind``):

- ``table_type``: the layer type of Table 1 of Lu et al. (what ``analyze`` groups its per-type
  figures by); ``None`` for the free aliases (``identity``, ``zero``, ``select``), which are never
  counted nor priced.
- ``gemm``: a matrix multiplication (conv, dwconv, fc): counted in ``macs``, priced by a GEMM
  model; every other kind's element operations are counted in ``ops`` only.
- ``inplace``: may write into its input's buffer when it is that tensor's only reader (Caffe's
  deploy files and ONNX Runtime do so for activations, BatchNorm, Scale and Dropout).
- ``alias``: the output *is* an input's buffer, whoever else reads it: ``"first"`` (a view of the
  first input: flatten, dropout at inference, identity, zero) or ``"chosen"`` (the input a
  ``select`` gene picks).
- ``free``: costs no time unless a profile's ``latency.kinds`` says otherwise.
- ``transparent``: a fusion chain runs through it (the runtime removes it before fusing).
- ``join``: reads two or more tensors (element-wise, or along the channels); every other kind
  reads exactly one (a ``select`` is built by the language, never written with inputs).
- ``residual``: the feature group of the residual model's layer counts (``gemm`` kinds are
  counted by GEMM shape instead): ``pool``, ``join``, ``act`` or ``other``.
"""

from __future__ import annotations

from typing import NamedTuple


class OpKind(NamedTuple):
    kind: str
    table_type: str | None
    gemm: bool = False
    inplace: bool = False
    alias: str | None = None  # "first" | "chosen" | None (see the module docstring)
    free: bool = False
    transparent: bool = False
    join: bool = False
    residual: str = "other"  # "gemm" | "pool" | "join" | "act" | "other"


def _table(*records: OpKind) -> dict:
    return {r.kind: r for r in records}


_ACT = dict(inplace=True, residual="act")

OPS: dict[str, OpKind] = _table(
    # matrix multiplications
    OpKind("conv", "conv", gemm=True, residual="gemm"),
    OpKind("dwconv", "conv", gemm=True, residual="gemm"),
    OpKind("fc", "fc", gemm=True, residual="gemm"),
    # pooling: a new tensor each
    OpKind("maxpool", "pool", residual="pool"),
    OpKind("avgpool", "pool", residual="pool"),
    OpKind("globalpool", "pool", residual="pool"),
    # normalisations and activations: in place on a tensor with one reader
    OpKind("batchnorm", "batchnorm", **_ACT),
    OpKind("scale", "scale", **_ACT),
    OpKind("relu", "relu", **_ACT),
    OpKind("relu6", "relu", **_ACT),
    OpKind("sigmoid", "activation", **_ACT),
    OpKind("tanh", "activation", **_ACT),
    OpKind("hsigmoid", "activation", **_ACT),
    OpKind("hswish", "activation", **_ACT),
    OpKind("swish", "activation", **_ACT),
    OpKind("gelu", "activation", **_ACT),
    # LayerNorm is not in place: runtimes write a new tensor
    OpKind("layernorm", "layernorm", residual="act"),
    OpKind("lrn", "lrn"),
    OpKind("softmax", "softmax"),
    # at inference dropout is the identity: a view, free, and fusion looks through it
    OpKind("dropout", "dropout", inplace=True, alias="first", free=True, transparent=True),
    OpKind("flatten", "reshape", alias="first", free=True),
    # joins and channel moves: a new tensor each
    OpKind("add", "eltwise", join=True, residual="join"),
    OpKind("mul", "eltwise", join=True, residual="join"),
    OpKind("concat", "concat", join=True, residual="join"),
    OpKind("shuffle", "shuffle"),
    OpKind("slice", "slice"),
    # the free aliases of the language: never counted in Table 1, never priced
    OpKind("identity", None, alias="first", free=True, transparent=True),
    OpKind("zero", None, alias="first", free=True),
    OpKind("select", None, alias="chosen", free=True, transparent=True),
)

# Other spellings the space language accepts for a kind above (SiLU is swish; stochastic depth is
# the identity at inference).
SPELLINGS = {"silu": "swish", "stochastic_depth": "identity", "drop_path": "identity"}


def kinds_where(**facts) -> tuple:
    """The op kinds whose records have all the given field values, in table order."""
    return tuple(k for k, r in OPS.items() if all(getattr(r, f) == v for f, v in facts.items()))


GEMM_KINDS = kinds_where(gemm=True)
FREE_KINDS = kinds_where(free=True)
TRANSPARENT_KINDS = kinds_where(transparent=True)
JOIN_KINDS = kinds_where(join=True)
