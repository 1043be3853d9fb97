"""`findbox eval --out` when the results cannot be written (found by benchmarks/faults.py disk)."""

from __future__ import annotations

import errno
import os

from tests.eval.conftest import model_args


def test_full_disk_names_the_out_folder_and_exits_2(eval_models, eval_data, tmp_path, monkeypatch, capsys):
    from findbox.cli import main
    from findbox.eval import report

    def disk_full(*args, **kwargs):  # what matplotlib raises when the disk fills while saving a plot
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(report, "render_overview", disk_full)
    out = tmp_path / "eval"
    rc = main(["eval", str(eval_data), "--out", str(out), "--limit", "1", "--no-sweep", "--no-progress",
               *model_args(eval_models)])
    assert rc == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"findbox eval: error: --out {out}: could not write the results"), error
    assert "No space left on device" in error and "incomplete" in error


def test_python_m_findbox_cli_prints_a_command_error_and_exits_2(tmp_path):
    """`python -m findbox.cli` (how the benchmarks and the tests start commands) used to print a traceback
    and exit 1 for a CommandError: __main__ was a second copy of findbox.cli with its own CommandError."""
    import subprocess
    import sys
    from pathlib import Path

    import findbox

    sample = Path(findbox.__file__).parent / "assets" / "sample" / "vlm.jsonl"
    done = subprocess.run([sys.executable, "-m", "findbox.cli", "eval", str(sample), "--out", str(tmp_path / "eval"),
                           "--server", "http://127.0.0.1:9", "--no-progress"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("findbox eval: error: http://127.0.0.1:9"), done.stderr
    assert "Traceback" not in done.stderr
