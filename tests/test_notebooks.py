"""Every notebook under notebooks/ runs top to bottom in a real Jupyter kernel, in small mode.

The kernel is this interpreter (`sys.executable -m ipykernel_launcher`), whatever "python3"
kernelspec the machine may have registered elsewhere; the notebook imports gancore from this checkout,
starts in the notebooks folder as Jupyter would, and writes its runs under a temporary root.
"""
import os
from pathlib import Path

import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager  # jupyter_client and traitlets come with nbclient
from jupyter_client.manager import AsyncKernelManager
from traitlets import default

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 600  # seconds per cell; small mode needs a fraction of that


def kernel_env(runs_root: Path) -> dict:
    """The kernel's environment: small budget, runs under runs_root. No PYTHONPATH: each notebook finds
    this checkout's gancore itself, as it must when a newcomer opens it with `jupyter lab`.

    One torch thread: small mode trains tiny nets, which gain nothing from a second thread, and on two
    cores shared with other work two threads made the same 100-step run 2-20x slower (threads spin
    waiting for a descheduled partner).
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return dict(env, GANCORE_RUNS=str(runs_root), GANCORE_SMALL="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


class ThisPythonKernel(AsyncKernelManager):
    """Starts ipykernel's own "python3" spec, whose argv is sys.executable: no kernelspec folders are
    searched, so a python3 kernelspec registered for another interpreter is never picked up."""

    @default("kernel_spec_manager")
    def _only_native_kernel(self):
        return KernelSpecManager(kernel_dirs=[])


def test_notebooks_found():
    assert NOTEBOOKS, "no notebooks under notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} cell {i}: outputs not stripped"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    runs_root = tmp_path / "runs"
    client = nbclient.NotebookClient(nb, kernel_name="python3", kernel_manager_class=ThisPythonKernel,
                                     timeout=CELL_TIMEOUT, allow_errors=False,
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=kernel_env(runs_root))  # raises CellExecutionError naming the failing cell
    assert nb.metadata["language_info"]["name"] == "python"
    assert any(runs_root.iterdir()), "the notebook made no run under GANCORE_RUNS"
