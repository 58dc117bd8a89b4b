"""Optuna storages from a ``--storage`` string.

- ``None`` / ``""`` / ``memory``: in memory (one process; nothing kept after it ends).
- ``sqlite:///path.db``: SQLite through SQLAlchemy (several processes of one machine), in
  write-ahead-log mode (``_fast_sqlite``).
- ``journal:PATH`` or a path ending in ``.log``: ``JournalStorage(JournalFileBackend(PATH))``, an
  append-only file with file locks (several processes, no database server).
- ``postgresql://user@host:port/db`` (or ``postgresql+psycopg2://...``): PostgreSQL, for workers on
  several machines (needs ``psycopg2``: ``pip install psycopg2-binary``).
"""

from __future__ import annotations

import os

from .._errors import ConstraintError
from .._imports import available, optional


def describe(url) -> str:
    if not url or url == "memory":
        return "in memory"
    if isinstance(url, str) and "@" in url and "://" in url:  # hide a password
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        user = cred.split(":", 1)[0]
        return f"{scheme}://{user}@{host}"
    return str(url)


def is_persistent(url) -> bool:
    return not (url is None or url == "" or url == "memory")


def make_storage(url):
    """An Optuna storage object (or ``None`` for in memory)."""
    optuna = optional("optuna", "a search")

    if not is_persistent(url):
        return optuna.storages.InMemoryStorage()
    if not isinstance(url, str):
        return url  # already a storage object
    if url.startswith("journal:") or url.endswith(".log"):
        path = url[len("journal:"):] if url.startswith("journal:") else url
        if not path:
            raise ConstraintError("--storage journal: needs a file path, e.g. journal:study.log")
        d = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(d):
            raise ConstraintError(f"--storage {url}: the folder {d} does not exist")
        JournalFileBackend = optional("optuna.storages.journal", "a journal storage").JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(path))
    if url.startswith("sqlite:"):
        if not url.startswith("sqlite:///"):
            raise ConstraintError(f"--storage {url!r}: an SQLite URL looks like sqlite:///study.db")
        path = url[len("sqlite:///"):]
        d = os.path.dirname(os.path.abspath(path)) if path else ""
        if path and not os.path.isdir(d):
            raise ConstraintError(f"--storage {url}: the folder {d} does not exist")
        return _fast_sqlite(_rdb(url, {"connect_args": {"timeout": 60}}))
    if url.startswith(("postgresql://", "postgresql+", "postgres://")):
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        if url.startswith("postgresql://"):
            # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg (3); use psycopg2 when only it is there
            if _has("psycopg"):
                pass
            elif _has("psycopg2"):
                url = "postgresql+psycopg2://" + url[len("postgresql://"):]
            else:
                raise ConstraintError("--storage postgresql://... needs a PostgreSQL driver: pip install psycopg2-binary "
                                      "(or augur-nas[postgres])")
        elif url.startswith("postgresql+psycopg2://") and not _has("psycopg2"):
            raise ConstraintError("--storage postgresql+psycopg2://... needs psycopg2: pip install psycopg2-binary")
        return _rdb(url, {"pool_pre_ping": True})
    raise ConstraintError(
        f"--storage {url!r} is not understood; use sqlite:///FILE.db, journal:FILE (or FILE.log), or "
        f"postgresql://USER@HOST:PORT/DB (default: in memory)")


def _fast_sqlite(storage):
    """SQLite in write-ahead-log mode with ``synchronous=NORMAL``: Optuna commits every parameter of
    a trial on its own (about 60 commits a trial here), and SQLite's defaults sync the disk at each
    commit (several times: the rollback journal, then the file), which made sqlite about 30x
    slower than in memory. In WAL mode with NORMAL a commit is an append to the log, synced at
    checkpoints; a crash of the process loses nothing, an OS crash or a power cut may lose the last
    trials but leaves a consistent database, and readers (optuna-dashboard, the other
    workers of this machine) do not block the writer. WAL needs a local disk, not a network share."""
    event = optional("sqlalchemy.event", "an sqlite study")

    @event.listens_for(storage.engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    storage.engine.dispose()  # the connections Optuna opened to set up its tables get the pragmas too
    return storage


def _has(module: str) -> bool:
    return available(module)


def _rdb(url, engine_kwargs):
    optuna = optional("optuna", "a search")

    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except ConstraintError:
        raise
    except Exception as exc:  # connection refused, bad credentials, unknown database, ...
        raise ConstraintError(f"--storage {describe(url)}: cannot open the study database: "
                              f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from exc
