"""The checked-in Ray Serve config is what `serve build` makes from the code, and the KubeRay example
names the same deployments with the same options, so neither can drift from the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
pytest.importorskip("ray")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "ray"


def test_checked_in_serve_config_is_what_serve_build_makes(tmp_path):
    out = tmp_path / "built.yaml"
    serve = Path(sys.executable).parent / "serve"
    subprocess.run([str(serve), "build", "findbox.serve.ray_app:app", "-o", str(out)], check=True,
                   capture_output=True, timeout=300, cwd=tmp_path)
    assert yaml.safe_load(out.read_text()) == yaml.safe_load((DEPLOY / "findbox_serve.yaml").read_text()), (
        "deploy/ray/findbox_serve.yaml is stale: regenerate it with "
        "`serve build findbox.serve.ray_app:app -o deploy/ray/findbox_serve.yaml`")


def test_kuberay_example_names_the_built_deployments_and_options():
    built = yaml.safe_load((DEPLOY / "findbox_serve.yaml").read_text())["applications"][0]["deployments"]
    service = yaml.safe_load((DEPLOY / "rayservice.yaml").read_text())
    example = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]
    assert example["import_path"] == "findbox.serve.ray:app_builder"
    assert [d["name"] for d in example["deployments"]] == [d["name"] for d in built]
    for mine, generated in zip(example["deployments"], built):
        assert set(mine) <= set(generated), f"{mine['name']}: options the code does not set: {set(mine) - set(generated)}"
        # a Serve config replaces ray_actor_options as a whole: the example must give every key the code sets
        assert set(mine.get("ray_actor_options", {})) == set(generated.get("ray_actor_options", {}))
