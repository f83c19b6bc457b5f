"""The house plan: every module of nudger/ has its place in the layers contract."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def layered() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c for c in contracts if c["type"] == "layers"]
    return {name.strip() for layer in layers["layers"] for name in re.split("[:|]", layer)}


def test_every_module_and_package_of_nudger_is_in_a_layer():
    top = {p.stem for p in (ROOT / "nudger").glob("*.py") if p.stem != "__init__"}
    top |= {p.parent.name for p in (ROOT / "nudger").glob("*/__init__.py")}
    assert top - layered() == set(), "add new modules to the layers in pyproject.toml"


def test_the_architecture_page_names_every_package():
    page = (ROOT / "docs" / "architecture.md").read_text()
    packages = {p.parent.name for p in (ROOT / "nudger").glob("*/__init__.py")}
    assert {name for name in packages if f"{name}/" not in page} == set()
