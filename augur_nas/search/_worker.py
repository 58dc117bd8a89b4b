"""``python -m augur_nas.search._worker``: one ``--workers`` process; reads its pickled
configuration from stdin (see ``_workers.run_worker``)."""

import pickle
import sys

from ._exhaustive import run_scan_worker
from ._workers import run_worker


def main() -> int:
    cfg = pickle.loads(sys.stdin.buffer.read())
    if cfg.get("mode") == "scan":
        return run_scan_worker(cfg)
    return run_worker(cfg)


if __name__ == "__main__":
    sys.exit(main())
