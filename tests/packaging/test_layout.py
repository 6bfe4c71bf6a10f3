"""Every Python package on disk ships in the wheel.

setuptools only packages what pyproject lists (the layers are remapped with `package-dir`), so
a new subpackage that is not listed works in an editable install and vanishes from the wheel.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("engine", "protocol", "plugins")


def packages_on_disk() -> set[str]:
    found = set()
    for layer in LAYERS:
        base = ROOT / layer
        if not base.is_dir():
            continue
        for init in base.rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT).parts
            if "__pycache__" not in relative:
                found.add("omnirelay." + ".".join(relative))
    return found


def test_every_subpackage_on_disk_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = packages_on_disk()
    assert on_disk, "no packages found: the layout test is looking in the wrong place"
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages"
    assert listed - on_disk == set(), "pyproject lists packages that do not exist"
    for package in listed:
        top = ".".join(package.split(".")[:2])
        assert top in config["package-dir"], f"{top} needs a package-dir mapping"


def test_there_is_no_omnirelay_init() -> None:
    # `omnirelay` is a PEP 420 namespace: an __init__.py would shadow third-party plugins.
    assert not (ROOT / "omnirelay" / "__init__.py").exists()
