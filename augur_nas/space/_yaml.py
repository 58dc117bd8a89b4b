"""Safe YAML reading with limits: no python tags, bounded size, nesting and alias expansion."""

from __future__ import annotations

import os

import yaml

from .._errors import SpecError

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_EXPANDED_NODES = 200_000


def _check_node(node: yaml.Node, path: str) -> None:
    """Reject deep nesting and alias bombs before constructing Python objects."""
    sizes: dict[int, int] = {}

    def size(n: yaml.Node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise SpecError(
                f"{path} nests deeper than {MAX_DEPTH} levels; a model or space never needs "
                f"that much nesting, so the file is refused ({path})"
            )
        key = id(n)
        if key in sizes:
            return sizes[key]
        if isinstance(n, yaml.MappingNode):
            _check_duplicate_keys(n, path)
            total = 1 + sum(size(k, depth + 1) + size(v, depth + 1) for k, v in n.value)
        elif isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(v, depth + 1) for v in n.value)
        else:
            total = 1
        if total > MAX_EXPANDED_NODES:
            raise SpecError(
                f"{path} expands to more than {MAX_EXPANDED_NODES:,} YAML nodes once its aliases "
                f"are resolved (an alias bomb?); the file is refused ({path})"
            )
        sizes[key] = total
        return total

    size(node, 0)


def _at(node: yaml.Node) -> str:
    return f"line {node.start_mark.line + 1}, column {node.start_mark.column + 1}"


def _check_duplicate_keys(node: yaml.MappingNode, path: str) -> None:
    """PyYAML silently keeps the last of two equal keys; a model file with one is refused."""
    seen: dict = {}
    for k, _ in node.value:
        if not isinstance(k, yaml.ScalarNode) or k.tag == "tag:yaml.org,2002:merge":
            continue
        key = (k.tag, k.value)
        if key in seen:
            first = seen[key]
            raise SpecError(
                f"{path} has the key `{k.value}` twice in one mapping (at {_at(first)} and {_at(k)}); YAML "
                f"would silently keep only the last, so the file is refused ({path})"
            )
        seen[key] = k


def load_yaml_text(text: str, source: str):
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise SpecError(f"{source} nests too deeply to be read; the file is refused ({source})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{source} is not valid YAML{where}: {problem} ({source})") from None
    if node is None:
        raise SpecError(f"{source} is empty; expected a mapping with `input` and `layers` ({source})")
    _check_node(node, source)
    try:
        return yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.constructor.ConstructorError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SpecError(
            f"{source} uses a YAML tag that safe loading refuses{where} "
            f"({(exc.problem or '').strip()}); python tags are never executed ({source})"
        ) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise SpecError(f"{source} could not be read as YAML: {str(exc).splitlines()[0]} ({source})") from None


def read_yaml_file(path: str | os.PathLike):
    source = str(path)
    if not os.path.exists(source):
        raise SpecError(f"no such file: {source}; give the path of a model or space file ({source})")
    if os.path.isdir(source):
        raise SpecError(f"{source} is a directory, not a model or space file ({source})")
    size = os.path.getsize(source)
    if size > MAX_FILE_BYTES:
        raise SpecError(f"{source} is {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit for a model file ({source})")
    try:
        with open(source, encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise SpecError(f"{source} is not UTF-8 text; is it a binary file? ({source})") from None
    except OSError as exc:
        raise SpecError(f"{source} could not be read: {exc.strerror} ({source})") from None
    return load_yaml_text(text, source)
