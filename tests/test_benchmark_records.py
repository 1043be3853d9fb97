"""Every benchmark writes its result file through `common.write_result`, so every record carries the
command, commit, clean-tree flag, machine and date it was made with (docs/BENCHMARKS.md's rule)."""

from __future__ import annotations

import ast
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# scripts that write JSON which is not a result: the reason
NOT_RESULTS = {"data_import.py": "writes the synthetic RefCOCO files it then imports"}


def json_writes(path: Path) -> list[int]:
    """Lines of `path` that write JSON to a file by hand: `.write_text(json.dumps(...))` or `json.dump(...)`."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        dumps = [a for a in node.args if isinstance(a, ast.Call) and isinstance(a.func, ast.Attribute)
                 and a.func.attr == "dumps"]
        if (node.func.attr == "write_text" and dumps) or (node.func.attr == "dump"
                                                          and getattr(node.func.value, "id", "") == "json"):
            lines.append(node.lineno)
    return lines


def test_benchmarks_write_results_through_write_result():
    offenders = {p.name: json_writes(p) for p in sorted(BENCHMARKS.glob("*.py"))
                 if p.name != "common.py" and p.name not in NOT_RESULTS}
    assert not {name: lines for name, lines in offenders.items() if lines}, offenders


def test_write_result_records_provenance(tmp_path):
    import json
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    from common import write_result

    write_result(tmp_path / "r.json", {"rows": [1.5]})
    record = json.loads((tmp_path / "r.json").read_text())
    assert {"machine", "commit", "clean_tree", "date", "command", "rows"} <= set(record)
    assert record["machine"]["cpus"] >= 1 and record["command"].startswith(".venv/bin/python")


def _git(root: Path, *args: str) -> None:
    import subprocess

    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True,
                   capture_output=True)


def test_a_result_written_earlier_in_the_same_run_leaves_the_tree_clean(tmp_path):
    """`make bench` writes cpu.json, then memory.json, ...: the first result must not mark the later ones
    as made from a dirty tree; a changed source file still does, and the changed results are listed."""
    from findbox.provenance import provenance

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "bench.py").write_text("x = 1\n")
    (tmp_path / "benchmarks" / "results" / "cpu.json").write_text("{}\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "c")
    outputs = ("benchmarks/results/",)
    assert provenance(tmp_path, outputs) | {"date": None} == {
        "commit": provenance(tmp_path)["commit"], "clean_tree": True, "uncommitted_outputs": [], "date": None}

    (tmp_path / "benchmarks" / "results" / "cpu.json").write_text('{"new": 1}\n')
    record = provenance(tmp_path, outputs)
    assert record["clean_tree"] is True and record["uncommitted_outputs"] == ["benchmarks/results/cpu.json"]
    assert provenance(tmp_path)["clean_tree"] is False  # without outputs, every tracked file counts

    (tmp_path / "bench.py").write_text("x = 2\n")
    assert provenance(tmp_path, outputs)["clean_tree"] is False


def test_write_result_lists_the_results_that_differ_from_the_commit(tmp_path):
    import json
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    from common import write_result

    write_result(tmp_path / "r.json", {"rows": []})
    record = json.loads((tmp_path / "r.json").read_text())
    assert isinstance(record["uncommitted_outputs"], list)


# committed records made before write_result recorded every field, on machines not available to remake them:
# the reason (docs/BENCHMARKS.md's records table shows "not recorded" for what they lack)
WITHOUT_PROVENANCE = {
    "cpu_static.json": "static int8 on an Intel Xeon with AMX (2026-12-06); records its command and commit only",
    "flops_static.json": "the FLOP floor of that same AMX run, written beside cpu_static.json",
}


def test_every_committed_result_records_its_provenance():
    """A docs table renders from a result file only when that file says how it was made: a record without command,
    commit, clean-tree flag, machine and date is either remade or named above with the reason."""
    import json

    missing = {}
    for path in sorted((BENCHMARKS / "results").glob("*.json")):
        record = json.loads(path.read_text())
        lacks = [k for k in ("command", "commit", "clean_tree", "machine", "date") if k not in record]
        if lacks and path.name not in WITHOUT_PROVENANCE:
            missing[path.name] = lacks
    assert not missing, missing
    assert set(WITHOUT_PROVENANCE) <= {p.name for p in (BENCHMARKS / "results").glob("*.json")}
