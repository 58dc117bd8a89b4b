"""Load spaces (YAML files, spec dicts) and concrete models from any supported format into the
one model type (a concrete model is a space of size 1)."""

from __future__ import annotations

import importlib.util
import os

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


def load_model(path, input_shape=None) -> SearchSpace:
    """A concrete model from ``.yaml``, ``.prototxt``, ``.onnx`` or ``file.py:factory``."""
    p = str(path)
    if ":" in p and p.split(":", 1)[0].endswith(".py"):
        return _load_factory(p, input_shape)
    ext = os.path.splitext(p)[1].lower()
    if ext in (".yaml", ".yml"):
        model = load_space(p)
    elif ext == ".prototxt":
        model = load_space_dict(read_prototxt(p), source=p)
    elif ext == ".onnx":
        from .io.onnx import read_onnx

        model = load_space_dict(read_onnx(p), source=p)
    else:
        if not os.path.exists(p):
            raise SpecError(f"no such file: {p}; give a .yaml, .prototxt or .onnx model, or file.py:factory ({p})")
        raise SpecError(f"{p} has an unknown extension `{ext or '(none)'}`; models are read from .yaml, "
                        f".prototxt, .onnx or file.py:factory ({p})")
    if model.n_genes and model.size != 1:
        raise SpecError(f"{p} is a search space with {model.size:,} candidates, not one model; use "
                        f"`augur-nas space {p}` or decode a candidate ({p})")
    return model


def from_torch(module, input_shape, name: str | None = None) -> SearchSpace:
    """A PyTorch module, traced with torch.fx, as an augur-nas model."""
    spec = torch_to_spec(module, input_shape, name=name)
    return load_space_dict(spec, source=f"<torch {type(module).__name__}>")


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
    except Exception as exc:  # the user's file: report, never a traceback
        raise SpecError(f"{path} raised {type(exc).__name__} while being imported: {exc} ({ref})") from None
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise SpecError(f"{path} has no function `{fn_name}` ({ref})")
    try:
        module = fn()
    except Exception as exc:
        raise SpecError(f"`{fn_name}()` in {path} raised {type(exc).__name__}: {exc} ({ref})") from None
    shape = tuple(input_shape) if input_shape else tuple(getattr(module, "input_shape", (1, 3, 224, 224)))
    return from_torch(module, shape, name=fn_name)
