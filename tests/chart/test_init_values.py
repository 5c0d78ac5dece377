"""The Helm values `migrator init` writes (deploy/migrator-values.yaml), rendered by the real Helm engine: the
chart deploys the project's migration image and its app with them, and lints clean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.chart.chart_render import CHART, containers, env_of, helm, pod_spec, render
from tests.conftest import run_migrator


def init_values(project: Path) -> dict[str, Any]:
    project.mkdir()
    result = run_migrator(["init"], cwd=project, database_url=None)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load((project / "deploy" / "migrator-values.yaml").read_text())  # type: ignore[no-any-return]


def test_the_chart_deploys_the_projects_images_with_init_values(tmp_path: Path) -> None:
    values = init_values(tmp_path / "Shop Front")
    rendered = render(values)
    migrator_image = "registry.example.com/shop-front-migrations:0.1.0"
    [job] = rendered.jobs()
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert {c["image"] for c in containers(pod_spec(job))} == {migrator_image}
    deployment = rendered.deployment()
    by_name = {c["name"]: c for c in containers(pod_spec(deployment))}
    assert by_name["app"]["image"] == "registry.example.com/shop-front:0.1.0"
    assert by_name["app"]["ports"][0]["containerPort"] == 8000
    assert by_name["wait-for-schema"]["image"] == migrator_image
    env = env_of(by_name["app"])
    assert env["DATABASE_URL"] == "postgresql://shop_front@db.example.internal:5432/shop_front"
    assert "DATABASE_PASSWORD_FILE" in env
    secrets = {v["secret"]["secretName"] for v in pod_spec(deployment)["volumes"] if "secret" in v}
    assert "shop-front-db" in secrets
    report = helm().lint(str(CHART), values, strict=True, kube_version="v1.33.0")
    assert report["errors"] == [], report
