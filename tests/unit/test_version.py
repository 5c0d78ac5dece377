"""One version: migrator/__init__.py's __version__, which pyproject reads and the chart's appVersion repeats."""

from __future__ import annotations

import tomllib

import yaml

from migrator import __version__
from tests.conftest import ROOT


def test_pyproject_reads_the_version_from_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "migrator.__version__"}


def test_the_charts_app_version_is_the_packages() -> None:
    chart = yaml.safe_load((ROOT / "chart" / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__
