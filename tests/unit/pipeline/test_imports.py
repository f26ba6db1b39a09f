"""The layering the pipeline and the batch exports rely on, read from their imports."""

from __future__ import annotations

import ast
from pathlib import Path

import xavyo_siem

PACKAGE = Path(xavyo_siem.__file__).parent


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
    return names


def test_the_pipeline_imports_no_sqlalchemy_and_nothing_of_the_store() -> None:
    """No module of pipeline/ names a SQLAlchemy type or reaches into store/."""
    for path in sorted((PACKAGE / "pipeline").glob("*.py")):
        for name in imported(path):
            assert not name.startswith(("sqlalchemy", "xavyo_siem.store")), (path.name, name)


def test_batch_exports_import_no_runtime_and_their_files_do_not_import_the_exporter() -> None:
    """batch/ sits below the runtime, and batch/files.py depends on nothing in
    batch/exporter.py (the exporter drives the file writer, not the other way round)."""
    for path in sorted((PACKAGE / "batch").glob("*.py")):
        assert not any(name.startswith("xavyo_siem.runtime") for name in imported(path)), path
    assert "xavyo_siem.batch.exporter" not in imported(PACKAGE / "batch" / "files.py")
