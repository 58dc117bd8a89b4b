"""Regenerate the golden per-layer tables tests/golden/NAME.json of the zoo models.

    python3 tests/golden/make_golden.py            # check against the paper, then write
    python3 tests/golden/make_golden.py --check    # only check; write nothing

Each golden file is ``augur_nas.analyze()`` of ``spaces/zoo/NAME.yaml`` (without the prose
``conventions``), one layer per line. Before anything is written every model is checked against
the paper's figures (Table 1 counts, conv/fc MACs, Table 4 weights) and the exact parameter
counts in tests/conftest.py; a model that disagrees is not written. Regenerate only after a
deliberate change of a counting convention, and say so in the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from conftest import GOLDEN, ZOO_MODELS, paper_problems, zoo_analysis  # noqa: E402

KEYS = ("model", "input", "totals", "by_type", "layers")


def golden_text(res: dict) -> str:
    """The analysis as JSON, one layer (or by-type entry) per line for readable diffs."""
    parts = ["{"]
    for i, key in enumerate(KEYS):
        val = res[key]
        comma = "," if i < len(KEYS) - 1 else ""
        if key == "layers":
            parts.append('  "layers": [')
            for j, layer in enumerate(val):
                parts.append("    " + json.dumps(layer) + ("," if j < len(val) - 1 else ""))
            parts.append("  ]" + comma)
        elif key == "by_type":
            parts.append('  "by_type": {')
            items = list(val.items())
            for j, (t, v) in enumerate(items):
                parts.append(f"    {json.dumps(t)}: {json.dumps(v)}" + ("," if j < len(items) - 1 else ""))
            parts.append("  }" + comma)
        else:
            parts.append(f"  {json.dumps(key)}: {json.dumps(val)}{comma}")
    parts.append("}")
    return "\n".join(parts) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    check_only = "--check" in argv
    problems = []
    results = {}
    for name in ZOO_MODELS:
        res = zoo_analysis(name)
        results[name] = res
        problems += paper_problems(name, res)
    if problems:
        print("not written; the analysis disagrees with the paper:\n  " + "\n  ".join(problems))
        return 1
    for name, res in results.items():
        text = golden_text(res)
        json.loads(text)  # well formed
        path = GOLDEN / f"{name}.json"
        if check_only:
            same = path.exists() and json.loads(path.read_text()) == json.loads(text)
            print(f"{path.name}: {'up to date' if same else 'DIFFERS'}")
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(HERE.parents[1])} ({len(res['layers'])} layers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
