"""Fixtures: Parquet that csm itself wrote.

- ``fixture_dir``: host ``hostB``, written through the real Store by
  ``target/release/examples/write_fixture`` (every table, exact known values).
- ``daemon_dir``: host ``hostA``, written by the real daemon (``csm run --duration 5s``,
  needs root for eBPF).
- ``fleet_dir``: both data dirs copied into one tree, as a fleet would.

Binaries come from ``$CSM_TARGET_DIR`` or ``<repo>/target/release``; build them with
``cargo build --release -p csm-user --bins --example write_fixture``.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The package of this checkout, not a copy installed earlier with pip.
sys.path.insert(0, str(REPO / "analysis"))
TARGET = Path(os.environ.get("CSM_TARGET_DIR", REPO / "target" / "release"))


def _binary(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} not built (cargo build --release -p csm-user --bins --example write_fixture)")
    return path


@pytest.fixture(scope="session")
def fixture_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fixture") / "data"
    subprocess.run(
        [str(_binary(TARGET / "examples" / "write_fixture")), "--data-dir", str(out), "--host", "hostB"],
        check=True,
    )
    return out


@pytest.fixture(scope="session")
def daemon_dir(tmp_path_factory) -> Path:
    csm = _binary(TARGET / "csm")
    if os.geteuid() != 0:
        pytest.fail("running the daemon needs root (eBPF): run the tests with cargo xtask test as root")
    out = tmp_path_factory.mktemp("daemon") / "data"
    result = subprocess.run(
        [str(csm), "run", "--duration", "5s", "--interval", "1s", "--data-dir", str(out), "--host", "hostA"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def fleet_dir(tmp_path_factory, fixture_dir, daemon_dir) -> Path:
    fleet = tmp_path_factory.mktemp("fleet")
    for source in (fixture_dir, daemon_dir):
        shutil.copytree(source, fleet, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".csm*"))
    return fleet
