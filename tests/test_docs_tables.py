"""Every marked figures table in README.md and docs/*.md is what benchmarks/docs_tables.py renders from
the committed result files: a figure edited by hand, or a result file changed without `make docs-tables`,
fails here."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _docs_tables():
    spec = importlib.util.spec_from_file_location("docs_tables", ROOT / "benchmarks" / "docs_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("doc", [p.relative_to(ROOT).as_posix() for p in _docs_tables().DOCS])
def test_docs_tables_are_the_result_files(doc):
    text = (ROOT / doc).read_text()
    assert _docs_tables().render(text, doc) == text, f"{doc}: a table differs from its result file: make docs-tables"


def test_every_table_is_in_a_doc_and_a_changed_figure_fails():
    tables = _docs_tables()
    text = "".join(p.read_text() for p in tables.DOCS)
    assert all(f"<!-- table:{name} -->" in text for name in tables.TABLES)  # none rendered for nothing
    readme = (ROOT / "README.md").read_text()
    figure = re.search(r"<!-- table:demo-figures -->.*?\*\*(0\.\d{3})\*\*", readme, re.S).group(1)  # low noise
    edited = readme.replace(f"**{figure}**", f"**{float(figure) + 0.007:.3f}**", 1)
    assert edited != readme and tables.render(edited) != edited
    with pytest.raises(ValueError, match="expected a table name of .*, got 'nope'"):
        tables.render("<!-- table:nope -->\n<!-- /table:nope -->")
