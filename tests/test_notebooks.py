"""The example notebooks in ``notebooks/`` run from top to bottom without errors.

Each notebook is executed in memory (the committed files are never written to) by an IPython
kernel running this interpreter, with ``notebooks/`` as its working directory, so the notebooks'
relative paths to the bundled tiny checkpoint resolve. Needs the ``test`` extra's ``nbclient``,
``nbformat`` and ``ipykernel``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def _missing_notebook_deps() -> str | None:
    missing = []
    for name in ("nbclient", "nbformat", "ipykernel", "jupyter_client"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        return f"{', '.join(missing)} not installed (pip install 'janus-rs[test]')"
    return None


MISSING = _missing_notebook_deps()
needs_jupyter = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


def test_notebooks_exist() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {"quickstart.ipynb", "pipeline.ipynb"} <= names, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_saved_without_outputs(path: Path) -> None:
    """Committed notebooks carry no outputs or execution counts (clean diffs, no stale results)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"cell {i} of {path.name} has saved outputs"
            assert cell.get("execution_count") is None, f"cell {i} of {path.name} has an execution count"


def _kernel_manager(kernel_dir: Path):
    """A kernel manager whose ``python3`` kernel is ipykernel on *this* interpreter.

    The ``python3`` kernelspec ipykernel installs into a virtualenv says ``python -m
    ipykernel_launcher`` (jupyter_client swaps a bare ``python`` for ``sys.executable``), but a
    user- or system-wide ``python3`` spec (``~/.local/share/jupyter/kernels``, ``JUPYTER_PATH``)
    would take precedence and could start another environment. A private spec pins it.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = kernel_dir / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (janus-rs tests)",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    ksm = KernelSpecManager(kernel_dirs=[str(kernel_dir)], ensure_native_kernel=False)
    return KernelManager(kernel_name="python3", kernel_spec_manager=ksm)


@needs_jupyter
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    # Keep the kernel from writing IPython history/config into the user's home.
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    original = path.read_bytes()
    nb = nbformat.reads(original.decode("utf-8"), as_version=4)  # an in-memory copy
    # One extra cell reports which interpreter the kernel runs.
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.prefix)"))
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        km=_kernel_manager(tmp_path / "kernels"),
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    failure = None
    try:
        client.execute()
    except CellExecutionError as e:  # names the cell and carries the traceback
        failure = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # without the terminal colours
    if failure is not None:
        pytest.fail(f"{path.name} failed:\n{failure}", pytrace=False)

    # Every code cell ran, none with an error, in this interpreter's environment.
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert code_cells and all(c.execution_count is not None for c in code_cells)
    for i, cell in enumerate(code_cells):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"code cell {i} of {path.name}: {errors}"
    kernel_prefix = "".join(o.get("text", "") for o in code_cells[-1].outputs if o.output_type == "stream")
    assert Path(kernel_prefix.strip()).resolve() == Path(sys.prefix).resolve(), kernel_prefix
    assert path.read_bytes() == original, "executing the notebook modified the committed file"
