"""`augur-nas analyze file.py:factory`: a user's PyTorch factory through the CLI."""

import json
import textwrap

import pytest

torch = pytest.importorskip("torch")


@pytest.mark.slow
def test_factory_analyzed_like_its_module(tmp_path, run_cli):
    src = tmp_path / "net.py"
    src.write_text(textwrap.dedent("""
        import torch.nn as nn

        def build():
            return nn.Sequential(
                nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    """))
    p = run_cli("analyze", f"{src}:build", "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    import importlib.util
    spec = importlib.util.spec_from_file_location("net", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    module = mod.build()
    assert res["totals"]["params"] == sum(q.numel() for q in module.parameters())
    # conv1 3*16*9*224*224 + conv2 16*32*9*112*112 + fc 32*10
    assert res["totals"]["macs"] == 3 * 16 * 9 * 224 * 224 + 16 * 32 * 9 * 112 * 112 + 320
    assert res["by_type"]["conv"]["count"] == 2


@pytest.mark.slow
def test_factory_errors_exit_2(tmp_path, run_cli):
    src = tmp_path / "bad.py"
    src.write_text("import torch.nn as nn\n\ndef build():\n    return nn.LSTM(3, 4)\n\ndef boom():\n    raise RuntimeError('no weights here')\n")
    for ref, words in ((f"{src}:build", "LSTM"), (f"{src}:boom", "no weights here"), (f"{src}:missing", "no function"),
                       (f"{tmp_path}/none.py:build", "no such file")):
        p = run_cli("analyze", ref)
        assert p.returncode == 2, (ref, p.stderr)
        assert words in p.stderr
        assert "Traceback" not in p.stderr
