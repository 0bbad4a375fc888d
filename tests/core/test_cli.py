import subprocess
import sys

import pytest

from quanta_interp.cli import GROUPS, main


def test_help_lists_every_group(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for group in GROUPS:
        assert group in out


@pytest.mark.parametrize("group", list(GROUPS))
def test_every_group_help_prints(group, capsys):
    with pytest.raises(SystemExit) as e:
        main([group, "--help"])
    assert e.value.code == 0
    assert "usage: quanta " + group in capsys.readouterr().out


def test_bad_option_exits_2_with_one_line():
    proc = subprocess.run([sys.executable, "-m", "quanta_interp.cli", "--no-such-option"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unrecognized arguments: --no-such-option" in proc.stderr


def test_help_imports_no_heavy_library():
    """`quanta --help` (measured: 0.22 s) stays fast because registering the commands imports no torch,
    scipy, scikit-learn or matplotlib: configs are plain dataclasses, models and numerics load in commands."""
    code = ("import sys; from quanta_interp.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'scipy', 'sklearn', 'matplotlib', 'transformers') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
