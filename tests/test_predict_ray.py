"""`findbox predict --engine ray`: the in-process engine's lines, from Ray Data actors, resumable."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from tests.conftest import TINY_DETECTION, make_image

pytest.importorskip("ray")


def predict(args: list[str], models) -> subprocess.CompletedProcess:
    # one detector backend: `auto` decides per thread count, and each actor runs with fewer threads than here
    model_args = ["--detector", str(models["detector"]), "--scorer", str(models["scorer"]), "--no-upscaler",
                  "--device", "cpu", "--precision", "fp32", "--detector-backend", "torch"]
    for key, value in TINY_DETECTION.items():
        model_args += [f"--{key.replace('_', '-')}", str(value)]
    return subprocess.run([sys.executable, "-m", "findbox.cli", "predict", *args, *model_args],
                          capture_output=True, text=True, timeout=600)


def test_ray_engine_writes_the_in_process_lines_and_resumes(tiny_models, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for seed in range(4):
        Image.fromarray(make_image(seed, 200 + 20 * seed, 120)).save(frames / f"f{seed}.png")
    (frames / "broken.jpg").write_bytes(b"not an image")
    captions = ["--caption", "grey missile", "--caption", "yellow drone"]

    local = predict([str(frames), *captions], tiny_models)
    assert local.returncode == 1 and "broken.jpg" in local.stderr  # the unreadable file is named, not fatal
    expected = local.stdout.splitlines()
    assert len(expected) == 8

    # a run cut short after the first image: the rerun on Ray answers only the rest
    out = tmp_path / "boxes.jsonl"
    out.write_text("\n".join(expected[:2]) + "\n" + '{"image": "torn', encoding="utf-8")
    remote = predict(["--engine", "ray", "--actors", "2", "--out", str(out), str(frames), *captions], tiny_models)
    assert remote.returncode == 1, remote.stderr[-2000:]
    assert "1 image(s) already in" in remote.stderr and "broken.jpg" in remote.stderr
    written = out.read_text(encoding="utf-8").splitlines()
    assert written == expected  # the same lines, in the same order; the torn line is gone
    assert [json.loads(line)["image"] for line in written[::2]] == sorted(str(p) for p in frames.glob("f*.png"))

    # everything done: a rerun writes nothing and starts no cluster
    again = predict(["--engine", "ray", "--out", str(out), str(frames / "f0.png"), *captions], tiny_models)
    assert again.returncode == 0 and "1 image(s) already in" in again.stderr
    assert out.read_text(encoding="utf-8").splitlines() == expected


def test_ray_engine_refuses_what_it_cannot_do(tiny_models, tmp_path):
    Image.fromarray(make_image(0)).save(tmp_path / "f.png")
    result = predict(["--engine", "ray", "--save", str(tmp_path / "drawn"), str(tmp_path / "f.png"),
                      "--caption", "x"], tiny_models)
    assert result.returncode == 2 and "save: --save draws in this process" in result.stderr


def test_a_cluster_already_running_here_is_left_alone(tiny_models, tmp_path):
    """Without --ray-address predict starts a cluster of its own, even where one runs on this machine
    (`ray start`, another findbox): before, Ray joined that one and refused the CPU count."""
    from ray.cluster_utils import Cluster

    Image.fromarray(make_image(0)).save(tmp_path / "f.png")
    other = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        result = predict(["--engine", "ray", "--actors", "1", str(tmp_path / "f.png"), "--caption", "x"], tiny_models)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "Connecting to existing Ray cluster" not in result.stderr
        assert len(result.stdout.splitlines()) == 1
    finally:
        other.shutdown()
