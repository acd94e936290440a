"""The Polars and Spark recipes of analysis/README.md, run as written on the store's
fixture (with its folder put in for /var/lib/csm), give pandas' per-user CPU seconds."""

import re
from pathlib import Path


import csm_analysis as csm

README = Path(__file__).resolve().parents[1] / "README.md"


def recipe(name: str) -> str:
    """The python block after `<!-- recipe: NAME -->` in the README."""
    text = README.read_text()
    match = re.search(rf"<!-- recipe: {name} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"no {name} recipe in {README}"
    return match.group(1)


def run_recipe(name: str, data_dir: Path) -> dict:
    scope: dict = {}
    exec(recipe(name).replace("/var/lib/csm", str(data_dir)), scope)
    return scope


def pandas_cpu_seconds(data_dir: Path) -> dict:
    by_user = csm.cpu_by_user(csm.load(data_dir, "cpu"))
    return {(h, u): round(s, 6) for h, u, s in zip(by_user["host"], by_user["user"], by_user["cpu_s"])}


def test_the_polars_recipe_reads_the_fixture(fixture_dir):
    per_user = run_recipe("polars", fixture_dir)["per_user"]
    got = {(h, u): round(s, 6) for h, u, s in per_user.iter_rows()}
    assert got == pandas_cpu_seconds(fixture_dir)
    assert len(got) >= 2


def test_the_spark_recipe_reads_the_fixture(fixture_dir):
    scope = run_recipe("spark", fixture_dir)
    try:
        got = {(r["host"], r["user"]): round(r["cpu_s"], 6) for r in scope["per_user"].collect()}
        assert set(scope["cpu"].columns) >= {"ts", "cpu_ns", "source", "host", "date"}
    finally:
        scope["spark"].stop()
    assert got == pandas_cpu_seconds(fixture_dir)
