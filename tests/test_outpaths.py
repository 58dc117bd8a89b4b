"""Output paths are checked before any work: one-paragraph SpecError naming the path."""

import os

import pytest

from augur_nas import SpecError
from augur_nas._atomic import check_out_dir, check_out_file, fallback_dir


def test_good_folder_is_created(tmp_path):
    p = tmp_path / "a" / "b"
    assert check_out_dir(str(p)) == str(p) and p.is_dir() and not list(p.iterdir())


def test_existing_file_refused(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(SpecError, match="existing file, not a folder"):
        check_out_dir(str(f))
    with pytest.raises(SpecError, match="is a folder"):
        check_out_file(str(tmp_path))
    with pytest.raises(SpecError, match="existing file"):
        check_out_file(str(f / "x.png"))


def test_unwritable_refused():
    with pytest.raises(SpecError, match="cannot write results into --out /proc/nope"):
        check_out_dir("/proc/nope")


def test_fallback_dir():
    d = fallback_dir()
    assert os.path.isdir(d)
    os.rmdir(d)


def test_search_checks_out_before_work(tmp_path, root):
    import time

    from augur_nas.search import search

    f = tmp_path / "file"
    f.write_text("x")
    for bad in ("/proc/nope", str(f)):
        t0 = time.monotonic()
        with pytest.raises(SpecError):
            search(root / "spaces" / "nb201.yaml", "tk1-gpu",
                   trials=50, out=bad)
        assert time.monotonic() - t0 < 1.0


def test_finish_falls_back_to_a_temporary_folder(tmp_path, monkeypatch):
    from augur_nas.search import _results

    said = []
    out = _results._writable("/proc/nope", said.append)
    assert os.path.isdir(out) and out != "/proc/nope"
    assert said and "written to " + out in said[0]
    os.rmdir(out)
