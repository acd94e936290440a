"""The example notebook runs headless against csm-written Parquet and answers."""

import os
from pathlib import Path

import nbclient
import nbformat

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "csm.ipynb"


def _run(data_dir):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env_before = {name: os.environ.get(name) for name in ("CSM_DATA_DIR", "PYTHONPATH")}
    os.environ["CSM_DATA_DIR"] = str(data_dir)
    # The kernel imports this checkout's package, not a copy installed earlier with pip.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(NOTEBOOK.parents[1]), env_before["PYTHONPATH"]) if p
    )
    try:
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    finally:
        for name, value in env_before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "\n".join(text)


def test_notebook_answers_on_a_fleet(fleet_dir):
    out = _run(fleet_dir)
    assert "gw.example" in out  # the outage
    assert "alice" in out and "bob" in out
    assert "hostA" in out and "hostB" in out
    assert "pandas and DuckDB agree" in out
