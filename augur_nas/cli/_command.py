"""One row of the command table: what ``augur-nas COMMAND`` shows in ``--help``, how it adds its
arguments, and the function that runs it (returns the exit code)."""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional


class Command(NamedTuple):
    help: str
    add_arguments: Callable  # (argparse.ArgumentParser) -> None
    run: Callable  # (argparse.Namespace) -> int, the exit code
    description: Optional[str] = None
