"""Read Caffe ``.prototxt`` network definitions into the augur-nas model dict.

The protobuf *text* format is parsed here directly (no caffe, no protobuf dependency):
nested messages ``name { ... }`` / ``name: { ... }`` / ``name < ... >``, scalar fields
``key: value`` (numbers, quoted strings, enum identifiers such as ``MAX``), repeated fields
(given several times or as ``key: [a, b]``), optional ``,`` / ``;`` separators and ``#``
comments.

Both the current ``layer { type: "Convolution" }`` syntax and the old (V1)
``layers { type: CONVOLUTION }`` syntax are understood. The network input may be given by
``input:`` with ``input_shape { dim: ... }`` or four ``input_dim:`` values, or by a layer of type
``Input``. Layers limited to the TRAIN phase (``include { phase: TRAIN }``) are skipped: a
prototxt is read as the deploy (TEST) network.

The result is a model in the language of ``docs/language.md``: every layer carries its Caffe
``name`` and explicit ``inputs`` (the names of the layers producing its bottoms, or ``input``).
Blob names are resolved in file order with the *latest* producer, so in-place layers
(``top == bottom``, e.g. ReLU) are chained correctly.

Every problem with the input raises a ``SpecError`` (``UnsupportedOpError`` for a layer type or
option augur-nas does not model) whose message names the file, the line and the layer.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple, Union

from augur_nas._errors import SpecError, UnsupportedOpError, where

__all__ = ["read_prototxt", "parse_prototxt_text"]

MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_NESTING = 64
_MAX_UINT = 2**31 - 1

# --------------------------------------------------------------------------------------------
# Protobuf text format: tokens and messages
# --------------------------------------------------------------------------------------------


@dataclass
class _Scalar:
    kind: str  # "num", "str" or "ident"
    text: str  # the literal as written (decoded contents for strings)
    line: int


@dataclass
class _Msg:
    line: int
    entries: list[tuple[str, Union[_Scalar, "_Msg"], int]] = field(default_factory=list)

    def all(self, key: str) -> list[tuple[Union[_Scalar, "_Msg"], int]]:
        return [(v, ln) for k, v, ln in self.entries if k == key]

    def has(self, key: str) -> bool:
        return any(k == key for k, _, _ in self.entries)


@dataclass
class _Tok:
    kind: str  # "ident", "num", "str", "punct", "eof"
    text: str
    line: int
    col: int


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>[ \t\r\f\v]+)
  | (?P<nl>\n)
  | (?P<comment>\#[^\n]*)
  | (?P<num>-?(?:0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)[fF]?(?![A-Za-z0-9_]))
  | (?P<negident>-[ \t]*(?:inf|infinity|nan)\b)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<badstr>["'])
  | (?P<punct>[{}\[\]<>:,;])
    """,
    re.VERBOSE,
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
            "\\": "\\", "'": "'", '"': '"', "?": "?"}


def _unescape(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\" or i + 1 >= len(body):
            out.append(c)
            i += 1
            continue
        n = body[i + 1]
        if n in _ESCAPES:
            out.append(_ESCAPES[n])
            i += 2
        elif n in "xX":
            m = re.match(r"[0-9a-fA-F]{1,2}", body[i + 2:])
            if m:
                out.append(chr(int(m.group(0), 16)))
                i += 2 + len(m.group(0))
            else:
                out.append(n)
                i += 2
        elif n in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            assert m is not None
            out.append(chr(int(m.group(0), 8)))
            i += 1 + len(m.group(0))
        else:
            out.append(n)
            i += 2
    return "".join(out)


def _describe(tok: _Tok) -> str:
    if tok.kind == "eof":
        return "the end of the file"
    if tok.kind == "str":
        return f"the string {tok.text!r}"
    text = tok.text if len(tok.text) <= 40 else tok.text[:37] + "..."
    return f"'{text}'"


class _Parser:
    def __init__(self, text: str, source: str | None):
        self.text = text
        self.source = source
        self.toks = self._tokenize()
        self.pos = 0

    # -- errors -------------------------------------------------------------------------------
    def _fail(self, problem: str, line: int) -> SpecError:
        return SpecError(f"syntax error in prototxt: {problem}{where(self.source, f'line {line}')}")

    # -- tokens -------------------------------------------------------------------------------
    def _tokenize(self) -> list[_Tok]:
        toks: list[_Tok] = []
        text = self.text
        pos, line, line_start = 0, 1, 0
        n = len(text)
        while pos < n:
            m = _TOKEN_RE.match(text, pos)
            col = pos - line_start + 1
            if m is None:
                ch = text[pos]
                shown = repr(ch) if ch.isprintable() else f"U+{ord(ch):04X}"
                raise self._fail(f"unexpected character {shown} at column {col}", line)
            kind = m.lastgroup
            tok_text = m.group(0)
            if kind == "nl":
                line += 1
                line_start = m.end()
            elif kind in ("ws", "comment"):
                pass
            elif kind == "badstr":
                raise self._fail(f"string starting at column {col} is not closed on its line", line)
            elif kind == "str":
                toks.append(_Tok("str", _unescape(tok_text[1:-1]), line, col))
            elif kind == "negident":
                toks.append(_Tok("ident", "-" + tok_text[1:].strip(), line, col))
            else:
                assert kind is not None
                toks.append(_Tok(kind, tok_text, line, col))
            pos = m.end()
        toks.append(_Tok("eof", "", line, 1))
        return toks

    def _peek(self) -> _Tok:
        return self.toks[self.pos]

    def _next(self) -> _Tok:
        tok = self.toks[self.pos]
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def _is(self, tok: _Tok, punct: str) -> bool:
        return tok.kind == "punct" and tok.text == punct


    # -- grammar ------------------------------------------------------------------------------
    def parse(self) -> _Msg:
        """Parse the whole text into the top-level message (iteratively: no recursion)."""
        root = _Msg(line=1)
        stack: list[_Frame] = [_Frame(root, "", "", 1, False)]
        while True:
            frame = stack[-1]
            tok = self._next()
            if tok.kind == "eof":
                if len(stack) > 1:
                    raise self._fail(
                        f"'{_OPEN_OF[frame.closer]}' opened at line {frame.open_line} for "
                        f"`{frame.name}` is never closed (the file ends first)", frame.open_line)
                return root
            if tok.kind == "punct" and tok.text in ("}", ">"):
                if len(stack) == 1:
                    raise self._fail(f"'{tok.text}' at column {tok.col} closes nothing", tok.line)
                if tok.text != frame.closer:
                    raise self._fail(
                        f"'{tok.text}' at column {tok.col} does not match the "
                        f"'{_OPEN_OF[frame.closer]}' opened at line {frame.open_line} for "
                        f"`{frame.name}`", tok.line)
                stack.pop()
                if frame.in_list:
                    nxt = self._next()
                    if self._is(nxt, ","):
                        opener = self._next()
                        if not (opener.kind == "punct" and opener.text in ("{", "<")):
                            raise self._fail(
                                f"expected '{{' for the next message in the list `{frame.name}`, "
                                f"but got {_describe(opener)} at column {opener.col}", opener.line)
                        child = _Msg(line=opener.line)
                        stack[-1].msg.entries.append((frame.name, child, opener.line))
                        stack.append(_Frame(child, _CLOSE_OF[opener.text], frame.name,
                                            opener.line, True))
                        continue
                    if not self._is(nxt, "]"):
                        raise self._fail(
                            f"expected ',' or ']' in the list `{frame.name}`, but got "
                            f"{_describe(nxt)} at column {nxt.col}", nxt.line)
                self._skip_separator()
                continue
            if tok.kind != "ident":
                if self._is(tok, "["):
                    raise self._fail(
                        f"extension fields ('[' at column {tok.col}) are not supported", tok.line)
                raise self._fail(f"expected a field name, but got {_describe(tok)} "
                                 f"at column {tok.col}", tok.line)
            name = tok.text
            nxt = self._peek()
            colon = False
            if self._is(nxt, ":"):
                self._next()
                colon = True
                nxt = self._peek()
            if nxt.kind == "punct" and nxt.text in ("{", "<"):
                self._next()
                stack.append(self._open(frame.msg, name, tok.line, nxt, len(stack), False))
                continue
            if not colon:
                raise self._fail(f"expected ':' or '{{' after the field name `{name}`, but got "
                                 f"{_describe(nxt)} at column {nxt.col}", nxt.line)
            if self._is(nxt, "["):
                self._next()
                first = self._peek()
                if first.kind == "punct" and first.text in ("{", "<"):
                    self._next()
                    stack.append(self._open(frame.msg, name, first.line, first, len(stack), True))
                    continue
                self._parse_scalar_list(frame.msg, name, nxt)
            else:
                frame.msg.entries.append((name, self._parse_scalar(name), tok.line))
            self._skip_separator()

    def _open(self, parent: _Msg, name: str, line: int, opener: _Tok, depth: int,
              in_list: bool) -> "_Frame":
        if depth > MAX_NESTING:
            raise self._fail(f"messages are nested more than {MAX_NESTING} deep", opener.line)
        child = _Msg(line=line)
        parent.entries.append((name, child, line))
        return _Frame(child, _CLOSE_OF[opener.text], name, opener.line, in_list)

    def _parse_scalar_list(self, msg: _Msg, name: str, open_tok: _Tok) -> None:
        if self._is(self._peek(), "]"):
            self._next()
            return
        while True:
            msg.entries.append((name, self._parse_scalar(name), self._peek().line))
            sep = self._next()
            if self._is(sep, "]"):
                return
            if not self._is(sep, ","):
                raise self._fail(f"expected ',' or ']' in the list `{name}` opened at line "
                                 f"{open_tok.line}, but got {_describe(sep)} at column {sep.col}",
                                 sep.line)

    def _parse_scalar(self, name: str) -> _Scalar:
        tok = self._next()
        if tok.kind == "num":
            return _Scalar("num", tok.text, tok.line)
        if tok.kind == "ident":
            return _Scalar("ident", tok.text, tok.line)
        if tok.kind == "str":
            parts = [tok.text]
            while self._peek().kind == "str":  # adjacent strings concatenate
                parts.append(self._next().text)
            return _Scalar("str", "".join(parts), tok.line)
        raise self._fail(f"expected a value for `{name}`, but got {_describe(tok)} "
                         f"at column {tok.col}", tok.line)

    def _skip_separator(self) -> None:
        tok = self._peek()
        if tok.kind == "punct" and tok.text in (",", ";"):
            self._next()


@dataclass
class _Frame:
    msg: _Msg
    closer: str
    name: str
    open_line: int
    in_list: bool


_CLOSE_OF = {"{": "}", "<": ">"}
_OPEN_OF = {"}": "{", ">": "<"}


# --------------------------------------------------------------------------------------------
# Field access with checked values
# --------------------------------------------------------------------------------------------

def _q(name: str) -> str:
    """A layer or blob name quoted for a one-line message."""
    return f"'{name}'" if name.isprintable() and "'" not in name else repr(name)


def _show(s: _Scalar) -> str:
    """A scalar as written, for a message."""
    text = s.text if len(s.text) <= 60 else s.text[:57] + "..."
    return repr(text) if s.kind == "str" or not text.isprintable() else text


_TRUE = {"true", "True", "t", "1"}
_FALSE = {"false", "False", "f", "0"}


class _Ctx:
    """What a message is about, for error messages: ``layer 'conv1' (Convolution)``."""

    def __init__(self, source: str | None, what: str):
        self.source = source
        self.what = what

    def error(self, problem: str, line: int, cls: type[SpecError] = SpecError) -> SpecError:
        return cls(f"{problem}{where(self.source, f'line {line}')}")

    def _single(self, msg: _Msg, key: str, label: str) -> tuple[Union[_Scalar, _Msg], int] | None:
        vals = msg.all(key)
        if not vals:
            return None
        if len(vals) > 1:
            raise self.error(f"`{label}` of {self.what} is given {len(vals)} times "
                             f"(at lines {', '.join(str(ln) for _, ln in vals)}), but takes one "
                             f"value", vals[1][1])
        return vals[0]

    def scalar(self, value: Union[_Scalar, _Msg], line: int, label: str) -> _Scalar:
        if isinstance(value, _Msg):
            raise self.error(f"`{label}` of {self.what} must be a value, but got a message "
                             f"`{{ ... }}`", line)
        return value

    def integer(self, value: Union[_Scalar, _Msg], line: int, label: str, minimum: int) -> int:
        s = self.scalar(value, line, label)
        text = s.text
        n: int | None = None
        if s.kind == "num" and len(text) <= 24:
            if re.fullmatch(r"-?(0|[1-9][0-9]*)", text):
                n = int(text, 10)
            elif re.fullmatch(r"-?0[xX][0-9a-fA-F]+", text):
                n = int(text, 16)
            elif re.fullmatch(r"-?0[0-7]+", text):
                n = int(text, 8)
        if n is not None and minimum <= n <= _MAX_UINT:
            return n
        shown = _show(s)
        raise self.error(f"`{label}` of {self.what} must be an integer >= {minimum}, "
                         f"but got {shown}", s.line)

    def number(self, value: Union[_Scalar, _Msg], line: int, label: str,
               lo: float | None = None, hi: float | None = None, lo_open: bool = False,
               hi_open: bool = False) -> float:
        s = self.scalar(value, line, label)
        x: float | None = None
        if s.kind == "num":
            t = s.text
            try:
                if re.fullmatch(r"-?0[xX][0-9a-fA-F]+", t):
                    x = float(int(t, 16))
                else:
                    x = float(t.rstrip("fF"))
            except (ValueError, OverflowError):
                x = None
        elif s.kind == "ident" and s.text.lower().lstrip("-") in ("inf", "infinity", "nan"):
            x = float(s.text)
        bounds = []
        if lo is not None:
            bounds.append(f"{'>' if lo_open else '>='} {lo:g}")
        if hi is not None:
            bounds.append(f"{'<' if hi_open else '<='} {hi:g}")
        if x is not None and math.isfinite(x):
            if lo is None or (x > lo if lo_open else x >= lo):
                if hi is None or (x < hi if hi_open else x <= hi):
                    integral = re.fullmatch(r"-?[0-9]+", s.text) is not None
                    return int(x) if integral and x.is_integer() else x
        need = "a finite number" + (" " + " and ".join(bounds) if bounds else "")
        shown = _show(s)
        raise self.error(f"`{label}` of {self.what} must be {need}, but got {shown}", s.line)

    def boolean(self, value: Union[_Scalar, _Msg], line: int, label: str) -> bool:
        s = self.scalar(value, line, label)
        if s.kind in ("ident", "num") and s.text in _TRUE:
            return True
        if s.kind in ("ident", "num") and s.text in _FALSE:
            return False
        shown = _show(s)
        raise self.error(f"`{label}` of {self.what} must be true or false, but got {shown}",
                         s.line)

    def enum(self, value: Union[_Scalar, _Msg], line: int, label: str,
             names: dict[str, str], numbers: dict[int, str]) -> str:
        s = self.scalar(value, line, label)
        if s.kind == "ident" and s.text in names:
            return names[s.text]
        if s.kind == "num" and re.fullmatch(r"[0-9]+", s.text) and int(s.text) in numbers:
            return numbers[int(s.text)]
        shown = _show(s)
        raise self.error(f"`{label}` of {self.what} must be one of {', '.join(names)}, "
                         f"but got {shown}", s.line)

    def string(self, value: Union[_Scalar, _Msg], line: int, label: str) -> str:
        s = self.scalar(value, line, label)
        if s.kind != "str":
            raise self.error(f"`{label}` of {self.what} must be a quoted string, "
                             f"but got {_show(s)}", s.line)
        return s.text

    # convenience: optional single fields with defaults
    def opt_int(self, msg: _Msg, key: str, label: str, default: int, minimum: int) -> int:
        got = self._single(msg, key, label)
        return default if got is None else self.integer(got[0], got[1], label, minimum)

    def opt_bool(self, msg: _Msg, key: str, label: str, default: bool) -> bool:
        got = self._single(msg, key, label)
        return default if got is None else self.boolean(got[0], got[1], label)

    def opt_number(self, msg: _Msg, key: str, label: str, default: float, **kw: Any) -> float:
        got = self._single(msg, key, label)
        return default if got is None else self.number(got[0], got[1], label, **kw)

    def opt_enum(self, msg: _Msg, key: str, label: str, default: str,
                 names: dict[str, str], numbers: dict[int, str]) -> str:
        got = self._single(msg, key, label)
        return default if got is None else self.enum(got[0], got[1], label, names, numbers)

    def opt_msg(self, msg: _Msg, key: str, label: str) -> _Msg | None:
        got = self._single(msg, key, label)
        if got is None:
            return None
        if not isinstance(got[0], _Msg):
            raise self.error(f"`{label}` of {self.what} must be a message `{label} {{ ... }}`, "
                             f"but got the value {got[0].text}", got[1])
        return got[0]

    def strings(self, msg: _Msg, key: str, label: str) -> list[tuple[str, int]]:
        return [(self.string(v, ln, label), ln) for v, ln in msg.all(key)]


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------

# Old (V1) enum layer types and the current type strings, by a normalised key.
_TYPE_NAMES = {
    "convolution": "Convolution", "pooling": "Pooling", "innerproduct": "InnerProduct",
    "relu": "ReLU", "relu6": "ReLU6", "lrn": "LRN", "batchnorm": "BatchNorm", "scale": "Scale",
    "eltwise": "Eltwise", "concat": "Concat", "dropout": "Dropout", "softmax": "Softmax",
    "flatten": "Flatten", "sigmoid": "Sigmoid", "tanh": "TanH", "split": "Split",
    "silence": "Silence", "input": "Input",
}

_SUPPORTED = ("Convolution, Pooling, InnerProduct, ReLU, LRN, BatchNorm, Scale, Eltwise, "
              "Concat, Dropout, Softmax, Flatten, Sigmoid, TanH, Split, Silence, Input")

_DATA_TYPES = {"DATA", "IMAGEDATA", "HDF5DATA", "MEMORYDATA", "WINDOWDATA", "DUMMYDATA"}

_POOL_NAMES = {"MAX": "MAX", "AVE": "AVE", "STOCHASTIC": "STOCHASTIC"}
_POOL_NUMBERS = {0: "MAX", 1: "AVE", 2: "STOCHASTIC"}
_ROUND_NAMES = {"CEIL": "CEIL", "FLOOR": "FLOOR"}
_ROUND_NUMBERS = {0: "CEIL", 1: "FLOOR"}
_ELTWISE_NAMES = {"PROD": "PROD", "SUM": "SUM", "MAX": "MAX"}
_ELTWISE_NUMBERS = {0: "PROD", 1: "SUM", 2: "MAX"}
_NORM_NAMES = {"ACROSS_CHANNELS": "ACROSS_CHANNELS", "WITHIN_CHANNEL": "WITHIN_CHANNEL"}
_NORM_NUMBERS = {0: "ACROSS_CHANNELS", 1: "WITHIN_CHANNEL"}
_PHASE_NAMES = {"TRAIN": "TRAIN", "TEST": "TEST"}
_PHASE_NUMBERS = {0: "TRAIN", 1: "TEST"}


@dataclass
class _Layer:
    index: int  # position among the (included) layers
    name: str | None
    type: str  # canonical type when known, else as written
    written_type: str
    bottoms: list[tuple[str, int]]
    tops: list[tuple[str, int]]
    line: int
    msg: _Msg
    ctx: _Ctx


def _layer_what(name: str | None, ltype: str, ordinal: int) -> str:
    who = f"layer {_q(name)}" if name else f"unnamed layer #{ordinal}"
    return f"{who} ({ltype})"


def _pair(ctx: _Ctx, msg: _Msg, key: str, key_h: str, key_w: str, default: int | None,
          minimum: int, required: bool, repeated: bool, layer_line: int) -> tuple[int, int] | None:
    """A (h, w) pair given as ``key`` (repeated 1 or 2 times) or as ``key_h`` + ``key_w``."""
    vals = msg.all(key)
    has_h, has_w = msg.has(key_h), msg.has(key_w)
    if vals and (has_h or has_w):
        raise ctx.error(f"{ctx.what} gives both `{key}` and `{key_h}`/`{key_w}`; use one or "
                        f"the other", vals[0][1])
    if has_h or has_w:
        if not (has_h and has_w):
            missing = key_w if has_h else key_h
            raise ctx.error(f"{ctx.what} gives `{key_h if has_h else key_w}` without "
                            f"`{missing}`", msg.all(key_h if has_h else key_w)[0][1])
        h = ctx.opt_int(msg, key_h, key_h, 0, minimum)
        w = ctx.opt_int(msg, key_w, key_w, 0, minimum)
        return h, w
    if not vals:
        if required:
            raise ctx.error(f"{ctx.what} has no `{key}` (nor `{key_h}` and `{key_w}`)",
                            msg.line if msg.line else layer_line)
        if default is None:
            return None
        return default, default
    if len(vals) > (2 if repeated else 1):
        raise ctx.error(f"`{key}` of {ctx.what} is given {len(vals)} times; "
                        f"{'2-D layers take one value or two (h, w)' if repeated else 'it takes one value'}",
                        vals[-1][1])
    nums = [ctx.integer(v, ln, key, minimum) for v, ln in vals]
    return (nums[0], nums[0]) if len(nums) == 1 else (nums[0], nums[1])


def _hw(p: tuple[int, int]) -> int | list[int]:
    return p[0] if p[0] == p[1] else [p[0], p[1]]


def _check_arity(layer: _Layer, n_bottoms: str, n_tops: int = 1) -> None:
    nb, nt = len(layer.bottoms), len(layer.tops)
    ok_b = nb == 1 if n_bottoms == "1" else nb >= 1 if n_bottoms == "1+" else nb >= 2
    want_b = {"1": "exactly 1 bottom", "1+": "at least 1 bottom", "2+": "at least 2 bottoms"}
    if not ok_b:
        raise layer.ctx.error(f"{layer.ctx.what} must have {want_b[n_bottoms]}, but has {nb}",
                              layer.line)
    if nt != n_tops:
        raise layer.ctx.error(f"{layer.ctx.what} must have exactly {n_tops} top, but has {nt}",
                              layer.line)


def _param(layer: _Layer, key: str) -> _Msg:
    got = layer.ctx.opt_msg(layer.msg, key, key)
    return got if got is not None else _Msg(line=layer.line)


def _section(layer: _Layer, key: str, arity: str) -> tuple[_Msg, "_Ctx"]:
    """A layer's ``key`` parameter message (empty when absent) and the context its errors are
    named in, after checking the layer's number of inputs (``_check_arity``)."""
    _check_arity(layer, arity)
    return _param(layer, key), _Ctx(layer.ctx.source, f"{key} of {layer.ctx.what}")


def _convert_conv(layer: _Layer) -> tuple[str, dict[str, Any]]:
    ctx = layer.ctx
    p, pc = _section(layer, "convolution_param", "1")
    out = _required_int(pc, p, "num_output", 1, layer.line)
    kernel = _pair(pc, p, "kernel_size", "kernel_h", "kernel_w", None, 1, True, True,
                   layer.line)
    stride = _pair(pc, p, "stride", "stride_h", "stride_w", 1, 1, False, True, layer.line)
    pad = _pair(pc, p, "pad", "pad_h", "pad_w", 0, 0, False, True, layer.line)
    dil = _pair(pc, p, "dilation", "", "", 1, 1, False, True, layer.line)
    groups = pc.opt_int(p, "group", "group", 1, 1)
    bias = pc.opt_bool(p, "bias_term", "bias_term", True)
    axis = pc.opt_int(p, "axis", "axis", 1, -2**31)
    if axis not in (1, -3):
        raise ctx.error(f"{ctx.what} convolves along axis {axis}; only axis 1 (channels) is "
                        f"supported", layer.line, UnsupportedOpError)
    if out % groups:
        raise ctx.error(f"`num_output` of {ctx.what} must be divisible by `group` "
                        f"({groups}), but got {out}", layer.line)
    assert kernel is not None and stride is not None and pad is not None and dil is not None
    if dil[0] != dil[1]:
        raise ctx.error(f"{ctx.what} has different dilations {dil[0]} and {dil[1]}; only "
                        f"one dilation for both axes is supported", layer.line,
                        UnsupportedOpError)
    return "conv", {"out": out, "kernel": _hw(kernel), "stride": _hw(stride),
                    "pad": _hw(pad), "groups": groups, "dilation": dil[0], "bias": bias}


def _convert_pool(layer: _Layer) -> tuple[str, dict[str, Any]]:
    ctx = layer.ctx
    p, pc = _section(layer, "pooling_param", "1")
    mode = pc.opt_enum(p, "pool", "pool", "MAX", _POOL_NAMES, _POOL_NUMBERS)
    if mode == "STOCHASTIC":
        raise ctx.error(f"{ctx.what} uses STOCHASTIC pooling, which is not supported "
                        f"(use MAX or AVE)", layer.line, UnsupportedOpError)
    if pc.opt_bool(p, "global_pooling", "global_pooling", False):
        return "globalpool", {"mode": "max" if mode == "MAX" else "avg"}
    kernel = _pair(pc, p, "kernel_size", "kernel_h", "kernel_w", None, 1, True, False,
                   layer.line)
    stride = _pair(pc, p, "stride", "stride_h", "stride_w", 1, 1, False, False, layer.line)
    pad = _pair(pc, p, "pad", "pad_h", "pad_w", 0, 0, False, False, layer.line)
    assert kernel is not None and stride is not None and pad is not None
    if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
        raise ctx.error(f"`pad` of {ctx.what} must be smaller than its kernel "
                        f"{_hw(kernel)}, but got {_hw(pad)}", layer.line)
    ceil = pc.opt_enum(p, "round_mode", "round_mode", "CEIL", _ROUND_NAMES,
                       _ROUND_NUMBERS) == "CEIL"
    return ("maxpool" if mode == "MAX" else "avgpool",
            {"kernel": _hw(kernel), "stride": _hw(stride), "pad": _hw(pad), "ceil": ceil})


def _convert_inner_product(layer: _Layer) -> tuple[str, dict[str, Any]]:
    ctx = layer.ctx
    p, pc = _section(layer, "inner_product_param", "1")
    out = _required_int(pc, p, "num_output", 1, layer.line)
    bias = pc.opt_bool(p, "bias_term", "bias_term", True)
    axis = pc.opt_int(p, "axis", "axis", 1, -2**31)
    if axis != 1:
        raise ctx.error(f"{ctx.what} flattens from axis {axis}; only axis 1 is supported",
                        layer.line, UnsupportedOpError)
    return "fc", {"out": out, "bias": bias}


def _convert_relu(layer: _Layer) -> tuple[str, dict[str, Any]]:
    ctx = layer.ctx
    p, pc = _section(layer, "relu_param", "1")
    slope = pc.opt_number(p, "negative_slope", "negative_slope", 0.0)
    if slope != 0:
        raise ctx.error(f"{ctx.what} is a leaky ReLU (negative_slope {slope:g}), which is "
                        f"not supported", layer.line, UnsupportedOpError)
    return "relu", {}


def _convert_activation(layer: _Layer) -> tuple[str, dict[str, Any]]:
    t = layer.type
    _check_arity(layer, "1")
    return {"ReLU6": "relu6", "Sigmoid": "sigmoid", "TanH": "tanh"}[t], {}


def _convert_lrn(layer: _Layer) -> tuple[str, dict[str, Any]]:
    ctx = layer.ctx
    p, pc = _section(layer, "lrn_param", "1")
    size = pc.opt_int(p, "local_size", "local_size", 5, 1)
    if size % 2 == 0:
        raise pc.error(f"`local_size` of {pc.what} must be odd, but got {size}",
                       p.all("local_size")[0][1])
    alpha = pc.opt_number(p, "alpha", "alpha", 1.0, lo=0.0)
    beta = pc.opt_number(p, "beta", "beta", 0.75)
    region = pc.opt_enum(p, "norm_region", "norm_region", "ACROSS_CHANNELS", _NORM_NAMES,
                         _NORM_NUMBERS)
    if region != "ACROSS_CHANNELS":
        raise ctx.error(f"{ctx.what} normalises WITHIN_CHANNEL, which is not supported "
                        f"(only ACROSS_CHANNELS)", layer.line, UnsupportedOpError)
    return "lrn", {"size": size, "alpha": alpha, "beta": beta}


def _convert_batchnorm(layer: _Layer) -> tuple[str, dict[str, Any]]:
    _check_arity(layer, "1")
    return "batchnorm", {"affine": False}


def _convert_scale(layer: _Layer) -> tuple[str, dict[str, Any]]:
    ctx = layer.ctx
    if len(layer.bottoms) == 2:
        raise ctx.error(f"{ctx.what} scales by a second bottom blob, which is not "
                        f"supported (only learned per-channel scales)", layer.line,
                        UnsupportedOpError)
    _check_arity(layer, "1")
    p = _param(layer, "scale_param")
    pc = _Ctx(ctx.source, f"scale_param of {ctx.what}")
    axis = pc.opt_int(p, "axis", "axis", 1, -2**31)
    num_axes = pc.opt_int(p, "num_axes", "num_axes", 1, -1)
    if axis != 1 or num_axes != 1:
        raise ctx.error(f"{ctx.what} scales with axis {axis} and num_axes {num_axes}; only "
                        f"per-channel scales (axis 1, num_axes 1) are supported", layer.line,
                        UnsupportedOpError)
    return "scale", {"bias": pc.opt_bool(p, "bias_term", "bias_term", False)}


def _convert_eltwise(layer: _Layer) -> tuple[str, dict[str, Any]]:
    ctx = layer.ctx
    p, pc = _section(layer, "eltwise_param", "2+")
    op = pc.opt_enum(p, "operation", "operation", "SUM", _ELTWISE_NAMES, _ELTWISE_NUMBERS)
    if op == "MAX":
        raise ctx.error(f"{ctx.what} takes the element-wise MAX, which is not supported "
                        f"(only SUM and PROD)", layer.line, UnsupportedOpError)
    for v, ln in p.all("coeff"):  # coefficients only validated: they do not change costs
        pc.number(v, ln, "coeff")
    return ("add" if op == "SUM" else "mul"), {}


def _convert_concat(layer: _Layer) -> tuple[str, dict[str, Any]]:
    ctx = layer.ctx
    p, pc = _section(layer, "concat_param", "1+")
    if p.has("axis") and p.has("concat_dim"):
        raise ctx.error(f"{ctx.what} gives both `axis` and `concat_dim`", layer.line)
    axis = (pc.opt_int(p, "axis", "axis", 1, -2**31) if p.has("axis")
            else pc.opt_int(p, "concat_dim", "concat_dim", 1, 0))
    if axis not in (1, -3):
        raise ctx.error(f"{ctx.what} concatenates along axis {axis}; only axis 1 "
                        f"(channels) is supported", layer.line, UnsupportedOpError)
    return ("concat", {}) if len(layer.bottoms) >= 2 else ("identity", {})


def _convert_dropout(layer: _Layer) -> tuple[str, dict[str, Any]]:
    p, pc = _section(layer, "dropout_param", "1")
    ratio = pc.opt_number(p, "dropout_ratio", "dropout_ratio", 0.5, lo=0.0, hi=1.0,
                          hi_open=True)
    return "dropout", {"ratio": ratio}


def _convert_softmax(layer: _Layer) -> tuple[str, dict[str, Any]]:
    _check_arity(layer, "1")
    return "softmax", {}


def _convert_flatten(layer: _Layer) -> tuple[str, dict[str, Any]]:
    _check_arity(layer, "1")
    return "flatten", {}


# Caffe's canonical layer type -> the converter of a layer that becomes one op of the model
_CONVERTERS = {
    "Convolution": _convert_conv,
    "Pooling": _convert_pool,
    "InnerProduct": _convert_inner_product,
    "ReLU": _convert_relu,
    "ReLU6": _convert_activation,
    "Sigmoid": _convert_activation,
    "TanH": _convert_activation,
    "LRN": _convert_lrn,
    "BatchNorm": _convert_batchnorm,
    "Scale": _convert_scale,
    "Eltwise": _convert_eltwise,
    "Concat": _convert_concat,
    "Dropout": _convert_dropout,
    "Softmax": _convert_softmax,
    "Flatten": _convert_flatten,
}


def _convert(layer: _Layer) -> tuple[str, dict[str, Any]]:
    """The (op, params) of a layer that becomes one op of the model."""
    return _CONVERTERS[layer.type](layer)  # every canonical type is handled


def _required_int(pc: _Ctx, msg: _Msg, key: str, minimum: int, layer_line: int) -> int:
    got = pc._single(msg, key, key)
    if got is None:
        raise pc.error(f"{pc.what} has no `{key}`", msg.line or layer_line)
    return pc.integer(got[0], got[1], key, minimum)


def _shape_dims(ctx: _Ctx, dims: list[tuple[Union[_Scalar, _Msg], int]], line: int,
                what: str) -> tuple[int, int, int]:
    if len(dims) != 4:
        raise ctx.error(f"{what} has {len(dims)} dimensions, but an image input needs 4 "
                        f"(N, C, H, W)", dims[0][1] if dims else line, UnsupportedOpError)
    vals = [ctx.integer(v, ln, "dim", 1) for v, ln in dims]
    return vals[1], vals[2], vals[3]


def _included(ctx: _Ctx, msg: _Msg) -> bool:
    """Whether a layer is part of the TEST (deploy) network."""
    for key, want in (("include", True), ("exclude", False)):
        for rule, ln in msg.all(key):
            if not isinstance(rule, _Msg):
                raise ctx.error(f"`{key}` of {ctx.what} must be a message", ln)
            got = ctx._single(rule, "phase", f"{key}.phase")
            if got is None:
                continue
            phase = ctx.enum(got[0], got[1], f"{key}.phase", _PHASE_NAMES, _PHASE_NUMBERS)
            if (phase == "TEST") != want:
                return False
    return True


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


class _Input(NamedTuple):
    """A declared network input: its blob, the line declaring it and its (C, H, W) if given."""
    blob: str
    line: int
    chw: tuple[int, int, int] | None


def parse_prototxt_text(text: str, source: str | None = None) -> dict[str, Any]:
    """Parse the text of a Caffe prototxt into a model dict of the augur-nas language.

    ``source`` names the file in error messages (and gives the default model name).
    """
    if not isinstance(text, str):
        raise SpecError(f"a prototxt must be text, but got {type(text).__name__}"
                        f"{where(source, None)}")
    root = _Parser(text, source).parse()
    top = _Ctx(source, "the network")

    name = _network_name(top, root, source)
    inputs = _declared_inputs(top, root)
    layers = _collect_layers(top, root, source)
    _check_types(layers)
    inputs += _input_layer_inputs(layers)
    the_input = _the_input(inputs, source)
    _name_layers(layers)
    model: dict[str, Any] = {"name": name} if name else {}
    model.update(_wire(layers, the_input.blob, the_input.chw, source))
    return model


def _network_name(top: _Ctx, root: _Msg, source: str | None) -> str | None:
    """The network's `name`, else the file's stem (None without either)."""
    got = top._single(root, "name", "name")
    if got is not None:
        return top.string(got[0], got[1], "name")
    if source:
        return os.path.splitext(os.path.basename(str(source)))[0]
    return None


def _declared_inputs(top: _Ctx, root: _Msg) -> list[_Input]:
    """The inputs declared at the top level (`input` with `input_shape` or `input_dim`)."""
    inputs: list[_Input] = []
    decl = top.strings(root, "input", "input")
    shapes = root.all("input_shape")
    input_dims = root.all("input_dim")
    if shapes and input_dims:
        raise top.error("the network gives both `input_shape` and `input_dim`; use one",
                        input_dims[0][1])
    if (shapes or input_dims) and not decl:
        ln = (shapes or input_dims)[0][1]
        raise top.error("the network gives an input shape but no `input:` blob name", ln)
    for k, (blob, ln) in enumerate(decl):
        chw: tuple[int, int, int] | None = None
        if shapes:
            if k < len(shapes):
                shp, sln = shapes[k]
                if not isinstance(shp, _Msg):
                    raise top.error("`input_shape` must be a message `input_shape { dim: ... }`",
                                    sln)
                chw = _shape_dims(top, shp.all("dim"), sln, f"`input_shape` of input {_q(blob)}")
        elif input_dims:
            part = input_dims[4 * k: 4 * k + 4]
            if part:
                chw = _shape_dims(top, part, ln, f"`input_dim` of input {_q(blob)}")
        inputs.append(_Input(blob, ln, chw))
    if shapes and len(shapes) != len(decl):
        raise top.error(f"the network declares {len(decl)} `input` blob(s) but "
                        f"{len(shapes)} `input_shape`(s)", shapes[0][1])
    if input_dims and len(input_dims) != 4 * len(decl):
        raise top.error(f"the network declares {len(decl)} `input` blob(s) and so needs "
                        f"{4 * len(decl)} `input_dim` values (N, C, H, W each), but got "
                        f"{len(input_dims)}", input_dims[0][1])
    return inputs


def _collect_layers(top: _Ctx, root: _Msg, source: str | None) -> list[_Layer]:
    """The layers of the TEST (deploy) network, in file order, with their canonical types."""
    layers: list[_Layer] = []
    ordinal = 0
    for key, value, line in root.entries:
        if key not in ("layer", "layers"):
            continue
        ordinal += 1
        if not isinstance(value, _Msg):
            raise top.error(f"`{key}` must be a message `{key} {{ ... }}`", line)
        lctx = _Ctx(source, f"unnamed layer #{ordinal}")
        got = lctx._single(value, "name", "name")
        lname = lctx.string(got[0], got[1], "name") if got is not None else None
        lname = lname or None
        lctx.what = f"layer {_q(lname)}" if lname else f"unnamed layer #{ordinal}"
        got = lctx._single(value, "type", "type")
        if got is None:
            raise lctx.error(f"{lctx.what} has no `type`", line)
        tval = lctx.scalar(got[0], got[1], "type")
        if tval.kind not in ("str", "ident"):
            raise lctx.error(f"`type` of {lctx.what} must be a layer type such as "
                             f"\"Convolution\", but got {tval.text}", tval.line)
        written = tval.text
        canonical = _TYPE_NAMES.get(written.replace("_", "").lower(), written)
        lctx.what = _layer_what(lname, written, ordinal)
        if not _included(lctx, value):
            continue
        bottoms = lctx.strings(value, "bottom", "bottom")
        tops = lctx.strings(value, "top", "top")
        layers.append(_Layer(len(layers), lname, canonical, written, bottoms, tops, line, value,
                             lctx))
    return layers


def _check_types(layers: list[_Layer]) -> None:
    """Refuse unknown types (checked first: a training Data layer is reported as what it is)."""
    for layer in layers:
        if layer.type not in _TYPE_NAMES.values():
            hint = ""
            if layer.type.replace("_", "").upper() in _DATA_TYPES:
                hint = (" (data layers read a database: use a deploy prototxt whose input is "
                        "`input_shape` or an \"Input\" layer)")
            elif "LOSS" in layer.type.upper() or layer.type.upper() == "ACCURACY":
                hint = " (loss and accuracy layers belong to training: use a deploy prototxt)"
            raise layer.ctx.error(
                f"{layer.ctx.what} has the type {_q(layer.written_type)}, which augur-nas does "
                f"not support{hint}; supported types are {_SUPPORTED}", layer.line,
                UnsupportedOpError)


def _input_layer_inputs(layers: list[_Layer]) -> list[_Input]:
    """The inputs declared by layers of type "Input"."""
    inputs: list[_Input] = []
    for layer in layers:
        if layer.type != "Input":
            continue
        if not layer.tops:
            raise layer.ctx.error(f"{layer.ctx.what} has no `top`", layer.line)
        p = _param(layer, "input_param")
        pshapes = p.all("shape")
        if not pshapes:
            raise layer.ctx.error(f"{layer.ctx.what} has no `input_param {{ shape {{ dim: ... "
                                  f"}} }}`", layer.line)
        if len(pshapes) not in (1, len(layer.tops)):
            raise layer.ctx.error(f"{layer.ctx.what} has {len(layer.tops)} tops but "
                                  f"{len(pshapes)} shapes", layer.line)
        for k, (blob, ln) in enumerate(layer.tops):
            shp, sln = pshapes[min(k, len(pshapes) - 1)]
            if not isinstance(shp, _Msg):
                raise layer.ctx.error(f"`shape` of {layer.ctx.what} must be a message "
                                      f"`shape {{ dim: ... }}`", sln)
            chw = _shape_dims(layer.ctx, shp.all("dim"), sln,
                              f"the input shape of {layer.ctx.what}")
            inputs.append(_Input(blob, ln, chw))
    return inputs


def _the_input(inputs: list[_Input], source: str | None) -> _Input:
    """The one network input, with its shape."""
    if not inputs:
        raise SpecError("the prototxt declares no network input: give `input: \"data\"` with "
                        "`input_shape { dim: N dim: C dim: H dim: W }` (or four `input_dim`), or "
                        "a layer of type \"Input\"" + where(source, None))
    if len(inputs) > 1:
        names = ", ".join(f"{_q(b)} (line {ln})" for b, ln, _ in inputs)
        raise UnsupportedOpError(f"the prototxt declares {len(inputs)} network inputs ({names}); "
                                 f"augur-nas models have exactly one input"
                                 f"{where(source, f'line {inputs[1][1]}')}")
    if inputs[0].chw is None:
        raise SpecError(f"network input {_q(inputs[0].blob)} has no shape: give `input_shape {{ dim: N "
                        f"dim: C dim: H dim: W }}` or four `input_dim`"
                        f"{where(source, f'line {inputs[0].line}')}")
    return inputs[0]


def _name_layers(layers: list[_Layer]) -> None:
    """Check the given layer names (unique, not `input`) and name the unnamed ones `{type}_{k}`."""
    seen: dict[str, int] = {}
    for layer in layers:
        if layer.name is None:
            continue
        if layer.name == "input" and layer.type != "Input":
            raise layer.ctx.error(f"{layer.ctx.what} is named 'input', a name augur-nas "
                                  f"reserves for the network input; rename the layer", layer.line)
        if layer.name in seen:
            raise layer.ctx.error(f"layer name {_q(layer.name)} is used twice (lines "
                                  f"{seen[layer.name]} and {layer.line}); layer names must be "
                                  f"unique", layer.line)
        seen[layer.name] = layer.line
    for layer in layers:
        if layer.name is None:
            base = layer.type.lower()
            k = layer.index
            cand = f"{base}_{k}"
            while cand in seen:
                k += 1
                cand = f"{base}_{k}"
            layer.name = cand
            seen[cand] = layer.line


def _wire(layers: list[_Layer], in_blob: str, in_chw: tuple[int, int, int],
          source: str | None) -> dict[str, Any]:
    """Resolve bottoms to producing layers and convert each layer; returns input and layers."""
    # producers[blob] = ascending indices of the layers producing it; -1 = the network input
    producers: dict[str, list[int]] = {}
    for layer in layers:
        for blob, _ in layer.tops:
            lst = producers.setdefault(blob, [])
            if not lst or lst[-1] != layer.index:
                lst.append(layer.index)
    is_input_layer = {layer.index for layer in layers if layer.type == "Input"}
    input_index = next((layer.index for layer in layers if layer.type == "Input"), -1)
    if input_index == -1:
        producers.setdefault(in_blob, []).insert(0, -1)

    def resolve(i: int, blob: str) -> tuple[int, bool] | None:
        lst = producers.get(blob)
        if not lst:
            return None
        earlier = [j for j in lst if j < i]
        if earlier:
            return earlier[-1], False
        return lst[0], True  # produced only at or after layer i

    def deps(i: int) -> Iterator[int]:
        for blob, _ in layers[i].bottoms:
            r = resolve(i, blob)
            if r is not None and r[0] >= 0:
                yield r[0]

    ref: dict[int, str] = {-1: "input"}  # layer index -> name that later layers use as input
    out_layers: list[dict[str, Any]] = []
    for layer in layers:
        i, ctx = layer.index, layer.ctx
        if i in is_input_layer:
            ref[i] = "input"
            continue
        names: list[str] = []
        for blob, ln in layer.bottoms:
            r = resolve(i, blob)
            if r is None:
                known = sorted(b for b, lst in producers.items() if any(j < i for j in lst))
                close = difflib.get_close_matches(blob, known, n=1)
                hint = f"; did you mean {_q(close[0])}?" if close else ""
                raise ctx.error(f"bottom {_q(blob)} of {ctx.what} names no top of any layer "
                                f"(nor the network input {_q(in_blob)}){hint}", ln)
            j, forward = r
            if forward:
                raise _forward_error(layers, i, j, blob, ln, deps, source)
            names.append(ref[j])
        if layer.type == "Split":
            _check_arity(layer, "1", max(1, len(layer.tops)))
            ref[i] = names[0]
            continue
        if layer.type == "Silence":
            ref[i] = layer.name or ""
            continue
        op, params = _convert(layer)
        assert layer.name is not None
        params["name"] = layer.name
        params["inputs"] = names
        out_layers.append({op: params})
        ref[i] = layer.name
    if not out_layers:
        raise SpecError("the prototxt has no layers besides its input" + where(source, None))
    c, h, w = in_chw
    return {"input": {"channels": c, "resolution": [h, w]}, "layers": out_layers}


def _forward_error(layers: list[_Layer], i: int, j: int, blob: str, line: int,
                   deps: Any, source: str | None) -> SpecError:
    """Layer ``i`` consumes ``blob``, produced only by layer ``j >= i``: a cycle or bad order."""
    what = layers[i].ctx.what
    if j == i:
        return SpecError(f"{what} consumes blob {_q(blob)}, which only it produces itself: the "
                         f"layers form a cycle ({layers[i].name} -> {layers[i].name}), so the "
                         f"network is not a DAG{where(source, f'line {line}')}")
    # Is there a path j ~> i along "consumes the output of" edges? Then i -> j -> ... -> i.
    parent: dict[int, int] = {j: j}
    todo = [j]
    while todo:
        k = todo.pop()
        if k == i:
            break
        for d in deps(k):
            if d not in parent:
                parent[d] = k
                todo.append(d)
    if i in parent:
        path = [i]
        while path[-1] != j:
            path.append(parent[path[-1]])
        cycle = [i] + path[::-1]  # i consumes j, j ... consumes i
        chain = " -> ".join(_q(layers[k].name or "") for k in cycle)
        return SpecError(f"{what} consumes blob {_q(blob)}, which is produced later by layer "
                         f"{_q(layers[j].name)} (line {layers[j].line}), and that layer depends on "
                         f"{_q(layers[i].name)}: the layers form a cycle ({chain}), so the network "
                         f"is not a DAG{where(source, f'line {line}')}")
    return SpecError(f"{what} consumes blob {_q(blob)} before any layer produces it (it is "
                     f"produced later, by layer {_q(layers[j].name)} at line {layers[j].line}); "
                     f"layers must come after the layers whose tops they consume"
                     f"{where(source, f'line {line}')}")


def read_prototxt(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a Caffe ``.prototxt`` file into a model dict of the augur-nas language."""
    source = os.fspath(path)
    try:
        size = os.path.getsize(source)
        if size > MAX_FILE_BYTES:
            raise SpecError(f"prototxt file is {size} bytes, more than the limit of "
                            f"{MAX_FILE_BYTES} bytes{where(source, None)}")
        with open(source, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"cannot read prototxt file: {exc.strerror or exc}"
                        f"{where(source, None)}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(f"prototxt file is not valid UTF-8 text (byte {exc.start})"
                        f"{where(source, f'line {line}')}") from None
    return parse_prototxt_text(text, source)
