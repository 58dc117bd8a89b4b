"""Load spaces (YAML files, spec dicts) and concrete models from any supported format into the
one model type (a concrete model is a space of size 1)."""

from __future__ import annotations

import importlib.util
import os
from typing import NamedTuple

from . import nb201
from ._errors import AugurError, SpecError
from .io.prototxt import read_prototxt
from .io.torch import torch_to_spec
from .lowering import check_shapes
from .space import SearchSpace
from .space._yaml import read_yaml_file


def load_space(path) -> SearchSpace:
    """Read a model or space YAML file; its shapes are checked by lowering candidates."""
    return load_space_dict(read_yaml_file(path), source=str(path))


def load_space_dict(spec: dict, source: str = "<spec>") -> SearchSpace:
    """A space from its spec dict; its shapes are checked by lowering candidates."""
    space = SearchSpace(spec, source=source)
    check_shapes(space)
    return space



DEFAULT_TORCH_SHAPE = (1, 3, 224, 224)


class InputShape(NamedTuple):
    """The input a model was priced at, and where that came from (shown in every header)."""
    shape: tuple  # (N, C, H, W)
    source: str   # "file", "flag", "factory", "module attribute", "default"

    def describe(self) -> str:
        text = "x".join(str(d) for d in self.shape)
        if self.source == "default":
            return f"{text} (default; a PyTorch factory has no input size: pass --input-shape or return (module, shape))"
        return f"{text} (from the {self.source})"


def parse_input_shape(text) -> tuple:
    """``"1x3x32x32"``, ``"3x32x32"`` or a tuple -> ``(1, C, H, W)``; SpecError otherwise."""
    parts = [p for p in str(text).lower().replace(",", "x").replace("*", "x").split("x")] if isinstance(text, str) \
        else list(text)
    try:
        dims = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        dims = ()
    if len(dims) == 3:
        dims = (1,) + dims
    if len(dims) != 4 or min(dims) < 1:
        raise SpecError(f"an input shape is NxCxHxW or CxHxW of positive integers (e.g. 1x3x32x32), but got `{text}`")
    if dims[0] != 1:
        raise SpecError(f"the input shape's batch must be 1 (got {dims[0]} in `{text}`); give the batch with --batch")
    return dims


def load_model(path, input_shape=None) -> SearchSpace:
    """A concrete model from ``.yaml``, ``.prototxt``, ``.onnx``, ``file.py:factory`` or an NB201 string.

    ``input_shape`` (``1x3x32x32``, ``(1, 3, 32, 32)`` or ``3x32x32``) sets the input size: a PyTorch
    factory is otherwise priced at its own ``(module, shape)``, its ``input_shape`` attribute, or
    224x224; an ONNX model with dynamic axes needs it.  ``model.input_info`` says which was used.
    """
    p = str(path)
    shape = parse_input_shape(input_shape) if input_shape is not None else None
    if nb201.is_arch_str(p):
        model = nb201.model(p)
        if shape is not None:
            model = load_space_dict(_with_input(model.spec, shape), source=model.source)
        return _tagged(model, "flag" if shape else "NB201 space")
    if ":" in p and p.split(":", 1)[0].endswith(".py"):
        return _load_factory(p, shape)
    ext = os.path.splitext(p)[1].lower()
    if ext in READERS:
        model = load_space_dict(READERS[ext](p, shape), source=p)
    else:
        if not os.path.exists(p):
            raise SpecError(f"no such file: {p}; give a .yaml, .prototxt or .onnx model, or file.py:factory ({p})")
        raise SpecError(f"{p} has an unknown extension `{ext or '(none)'}`; models are read from .yaml, "
                        f".prototxt, .onnx or file.py:factory ({p})")
    if model.n_genes and model.size != 1:
        raise SpecError(f"{p} is a search space with {model.size:,} candidates, not one model; use "
                        f"`augur-nas space {p}` or decode a candidate ({p})")
    return _tagged(model, "flag" if shape else "file")


def _read_yaml(path: str, shape=None) -> dict:
    return _with_input(read_yaml_file(path), shape)


def _read_prototxt(path: str, shape=None) -> dict:
    return _with_input(read_prototxt(path), shape)


# Model-file readers by extension: ``read(path, input shape or None) -> spec dict``. The ONNX
# reader registers itself when io/onnx.py is imported (the package's __init__ imports it): that
# module imports this one to load the models it exports, so this one does not import it back.
READERS: dict = {".yaml": _read_yaml, ".yml": _read_yaml, ".prototxt": _read_prototxt}


def register_reader(ext: str, read) -> None:
    """Read model files ending in ``ext`` (e.g. ``".onnx"``) with ``read(path, input_shape)``."""
    READERS[ext.lower()] = read


def _with_input(spec: dict, shape):
    """The spec with its input set to ``shape`` (a copy); the spec itself when no shape is given."""
    if shape is None or not isinstance(spec, dict):
        return spec
    out = dict(spec)
    out["input"] = {"channels": int(shape[1]), "resolution": int(shape[2]) if shape[2] == shape[3] else [int(shape[2]), int(shape[3])]}
    return out


def _tagged(model: SearchSpace, source: str) -> SearchSpace:
    inp = model.spec.get("input", {}) if isinstance(model.spec, dict) else {}
    res = inp.get("resolution", 0)
    h, w = (res, res) if isinstance(res, int) else tuple(res)
    model.input_info = InputShape((1, int(inp.get("channels", 0)), int(h), int(w)), source)
    return model


def from_torch(module, input_shape, name: str | None = None) -> SearchSpace:
    """A PyTorch module, traced with torch.fx, as an augur-nas model."""
    spec = torch_to_spec(module, input_shape, name=name)
    model = load_space_dict(spec, source=f"<torch {type(module).__name__}>")
    model.input_info = InputShape(tuple(int(d) for d in input_shape), "argument")
    return model


def _load_factory(ref: str, input_shape):
    path, fn_name = ref.rsplit(":", 1)
    if not os.path.isfile(path):
        raise SpecError(f"no such file: {path} (from `{ref}`)")
    spec = importlib.util.spec_from_file_location("_augur_user_model", path)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except AugurError:
        raise
    except ModuleNotFoundError as exc:
        raise SpecError(f"{path} imports the module `{exc.name}`, which is not installed{_install_hint(exc.name)}"
                        f" ({ref})") from None
    except Exception as exc:  # the user's file: report, never a traceback
        raise SpecError(f"{path} raised {type(exc).__name__} while being imported: {exc} ({ref})") from None
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise SpecError(f"{path} has no function `{fn_name}` ({ref})")
    try:
        module = fn()
    except ModuleNotFoundError as exc:
        raise SpecError(f"`{fn_name}()` in {path} needs the module `{exc.name}`, which is not installed"
                        f"{_install_hint(exc.name)} ({ref})") from None
    except Exception as exc:
        raise SpecError(f"`{fn_name}()` in {path} raised {type(exc).__name__}: {exc} ({ref})") from None
    module, shape, source = _factory_shape(module, input_shape, ref)
    model = from_torch(module, shape, name=_factory_name(path, fn_name))
    model.input_info = InputShape(shape, source)
    return model


def _factory_name(path: str, fn_name: str) -> str:
    """One name for a factory's model wherever it is used (predict, measure): the file's stem."""
    return os.path.splitext(os.path.basename(path))[0] or fn_name


def _factory_shape(result, input_shape, ref: str):
    """``(module, (N, C, H, W), where the shape came from)`` for what a factory returned."""
    module, own = result, None
    if isinstance(result, tuple) and len(result) == 2:
        module, own = result
        try:
            own = parse_input_shape(own)
        except SpecError as exc:
            raise SpecError(f"the factory returned (module, shape), but {exc} ({ref})") from None
    if input_shape is not None:
        return module, tuple(input_shape), "flag"
    if own is not None:
        return module, own, "factory"
    attr = getattr(module, "input_shape", None)
    if attr is not None:
        return module, parse_input_shape(attr), "module attribute"
    return module, DEFAULT_TORCH_SHAPE, "default"


def _install_hint(name) -> str:
    top = str(name or "").split(".")[0]
    if top == "torch" or top == "torchvision":
        return "; install it with `pip install 'augur-nas[torch]'` (or `pip install torch`)"
    if top in ("onnx", "onnxruntime"):
        return "; install it with `pip install 'augur-nas[onnx]'`"
    return f"; install it with `pip install {top}`" if top else ""
