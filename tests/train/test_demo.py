"""The demo recipe's bookkeeping: pooled figures and the training record in the manifest."""

import dataclasses
import json
from pathlib import Path

import pytest

from findbox.train.demo import DemoRecipe, continued_rounds, pooled_figures, recorded_steps, restore_steps, training_record


def _run(n, hits, recall, scorer_acc, ips):
    return {"n_instances": n, "n_hits": hits, "n_images": 10, "accuracy": hits / n, "instances_per_s": ips,
            "diagnostics": {"detector_recall": recall, "scorer_accuracy_given_covered": scorer_acc}}


def test_pooled_figures_weigh_each_instance_once():
    runs = [_run(100, 90, 0.95, 90 / 95, 30.0), _run(300, 240, 0.9, 240 / 270, 20.0)]
    f = pooled_figures(runs, (1, 2))
    assert f["accuracy"] == pytest.approx(330 / 400)  # not the mean of 0.9 and 0.8
    assert f["detector_recall"] == pytest.approx((95 + 270) / 400)
    assert f["scorer_accuracy_given_covered"] == pytest.approx(330 / 365)
    assert f["n_instances"] == 400 and f["n_images"] == 20 and f["seeds"] == [1, 2]
    assert f["instances_per_s"] == 20.0  # the slower run
    assert f["per_seed"] == {"1": 0.9, "2": 0.8}


def test_training_record_reads_each_runs_metrics(tmp_path):
    recipe = DemoRecipe()
    (tmp_path / "det").mkdir()
    (tmp_path / "det" / "metrics.json").write_text(json.dumps({"stages": [
        {"imgsz": 512, "epochs": 25, "mAP50": 0.8, "mAP50-95": 0.5, "recall": 0.7, "train_s": 100.0}]}))
    (tmp_path / "scorer_round2").mkdir()
    (tmp_path / "scorer_round2" / "metrics.json").write_text(json.dumps(
        {"train_crops": 10, "val_accuracy": 0.9, "val_chance": 0.2, "seconds": 50.0}))
    record = training_record(tmp_path, recipe)
    assert [d["run"] for d in record["detector"]] == ["det"] and record["detector"][0]["imgsz"] == 512
    assert [s["round"] for s in record["scorer"]] == [2]  # missing runs are left out, not invented
    assert record["train_seconds"] == 150.0


def test_continuing_needs_a_recipe_that_starts_like_the_bundles(tmp_path):
    """The shipped bundle's recipe had no mixed rounds: the current recipe continues it after its 5 rounds."""
    old = dataclasses.asdict(DemoRecipe())
    del old["scorer_mix"], old["scorer_mix_rounds"]
    (tmp_path / "manifest.json").write_text(json.dumps({"recipe": old, "command": "make demo-models"}))
    done, _ = continued_rounds(DemoRecipe(), tmp_path)
    assert done == len(DemoRecipe().scorer_rounds) == 5
    with pytest.raises(ValueError, match="continue_from: the bundle's scorer rounds"):
        continued_rounds(DemoRecipe(scorer_rounds=((4, 7e-4, 1500),)), tmp_path)
    with pytest.raises(ValueError, match="the bundle's recipe has scorer_seed = 2000, this recipe 7"):
        continued_rounds(DemoRecipe(scorer_seed=7), tmp_path)
    with pytest.raises(ValueError, match="continue_from: expected a demo bundle with manifest.json"):
        continued_rounds(DemoRecipe(), tmp_path / "nothing")


def _figures(seeds):
    return {noise: {"accuracy": 0.5, "seeds": list(seeds)} for noise in ("low", "high")}


def test_steps_of_a_manifest_without_them_come_from_what_its_builds_recorded(tmp_path):
    """A continued manifest of before steps existed: the earlier build made the detector and rounds 1-5,
    the continuation the mixed rounds; its hand-editable "command" is not read, nothing unrecorded is invented."""
    manifest = {"command": "edited by hand", "recipe": dataclasses.asdict(DemoRecipe()), "figures": _figures((9301,)),
                "build_seconds": 300.0,
                "continued_from": {"bundle": "old/bundle", "scorer_rounds_reused": 5, "command": "make demo-models",
                                   "build_seconds": 100.0, "figures": _figures((9001, 9002))}}
    first, second = recorded_steps(manifest)
    assert first["command"] == "make demo-models" and first["continued_from"] is None
    assert first["detector_runs"] == ["det", "det_finetune1", "det_finetune2"] and first["scorer_rounds"] == [1, 2, 3, 4, 5]
    assert [d[0] for d in first["data"]] == ["det_data", "det_more_data", "scorer_data_1500", "scorer_data_3000",
                                             "eval_low_9001", "eval_low_9002", "eval_high_9001", "eval_high_9002"]
    assert second["command"] == "python -m findbox.train.demo --continue-from old/bundle"
    assert second["continued_from"] == "old/bundle" and second["detector_runs"] == [] and second["scorer_rounds"] == [6, 7]
    assert [d[0] for d in second["data"]] == ["scorer_mix_low_2100", "scorer_mix_high_2200", "eval_low_9301",
                                              "eval_high_9301"]
    assert second["build_seconds"] == 200.0
    assert all(s[k] is None for s in (first, second) for k in ("commit", "clean_tree", "date", "found_in_work"))

    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    restored = restore_steps(tmp_path)
    assert "command" not in restored and restored["steps"] == [first, second]
    assert {k: v for k, v in restored.items() if k != "steps"} == json.loads(json.dumps(
        {k: v for k, v in manifest.items() if k != "command"}))
    assert restore_steps(tmp_path) == restored  # a manifest with steps stays as it is


def test_recipe_serves_what_it_measured():
    r = DemoRecipe()
    assert r.eval_seeds and len(set(r.eval_seeds)) == len(r.eval_seeds)
    trained_seeds = {r.det_seed, r.det_more[0] and r.det_more[1], r.scorer_seed} | {seed for _, seed, _ in r.scorer_mix}
    assert not trained_seeds & set(r.eval_seeds)  # evaluation never sees a training seed
    assert all(images > 0 for _, _, images in r.scorer_rounds)


@pytest.mark.slow
def test_recipe_runs_end_to_end_in_miniature(tmp_path):
    """`make demo-models` in miniature: every findbox command of the recipe runs and the bundle serves."""
    from findbox.train.demo import build

    recipe = DemoRecipe(det_images=6, det_stages="128:1", det_more=(5, 1100),
                        det_finetunes=(("det_data", "160:1"), ("det_more_data", "160:1")), det_imgsz=160,
                        scorer_preset="tiny", scorer_rounds=((1, 1e-3, 6), (1, 5e-4, 10)),
                        scorer_mix=((4, 2100, "low"), (3, 2200, "high")), scorer_mix_rounds=((1, 5e-4),), scorer_batch=16,
                        scorer_micro_batch=8, eval_images=2, eval_seeds=(9001,), calibration_images=2)
    out = tmp_path / "bundle"
    manifest = build(recipe, tmp_path / "work", out, command="python -m findbox.train.demo --out b")
    # one step, from nothing: everything it shipped it ran itself, at a recorded commit and date
    (step,) = manifest["steps"]
    assert step["command"] == "python -m findbox.train.demo --out b" and step["continued_from"] is None
    assert step["found_in_work"] == [] and step["date"] and "commit" in step
    assert step["detector_runs"] == ["det", "det_finetune1", "det_finetune2"] and step["scorer_rounds"] == [1, 2, 3]

    assert (out / "detector.pt").is_file() and (out / "scorer" / "config.json").is_file()
    assert not list((out / "scorer").glob("*.jsonl"))  # training logs stay in the work folder
    # the build calibrates the scorer it ships: --precision auto reads that record, keyed to these weights
    from findbox.calibration import read_calibration

    record = json.loads((out / "scorer" / "findbox_calibration.json").read_text())
    assert record["data"]["images"] == 2 and "calib_low_9501" in record["data"]["path"]
    assert step["calibration"] == record["results"] and {r["precision"] for r in record["results"]} >= {"fp32"}
    assert read_calibration(out / "scorer") is not None
    assert json.loads((out / "manifest.json").read_text()) == json.loads(json.dumps(manifest))
    assert manifest["serve"]["detection"]["imgsz"] == 160 and manifest["serve"]["ranking"]["score_fusion"] == "product"
    assert set(manifest["figures"]) == {"low", "high"}
    assert 0.0 <= manifest["figures"]["low"]["accuracy"] <= 1.0
    assert [d["run"] for d in manifest["training"]["detector"]] == ["det", "det_finetune1", "det_finetune2"]
    assert [s["round"] for s in manifest["training"]["scorer"]] == [1, 2, 3]
    assert manifest["training"]["scorer"][1]["train_crops"] > manifest["training"]["scorer"][0]["train_crops"]
    # the last round trains on both noise levels' crops as one set, in batches of whole images
    mixed = json.loads((tmp_path / "work" / "scorer_round3" / "train_config.json").read_text())
    assert [Path(c).name for c in mixed["crops"]] == ["crops_mix_low_2100", "crops_mix_high_2200"]
    assert mixed["batch_by"] == "image"
    assert manifest["training"]["scorer"][2]["train_crops"] == sum(
        json.loads((tmp_path / "work" / c / "crops.json").read_text())["crops"]["train"] for c in
        ("crops_mix_low_2100", "crops_mix_high_2200"))

    # a recipe with one more mixed round continues this bundle: only that round runs, into the same folder
    longer = dataclasses.replace(recipe, scorer_mix_rounds=((1, 5e-4), (1, 2e-4)))
    detector_bytes = (out / "detector.pt").read_bytes()
    continued = build(longer, tmp_path / "work2", out, continue_from=out)
    assert (out / "detector.pt").read_bytes() == detector_bytes  # the detector is the bundle's, not retrained
    assert not (tmp_path / "work2" / "det").exists() and not (tmp_path / "work2" / "scorer_round1").exists()
    assert (tmp_path / "work2" / "scorer_round4" / "config.json").is_file()
    assert [s["round"] for s in continued["training"]["scorer"]] == [1, 2, 3, 4]
    assert continued["training"]["detector"] == manifest["training"]["detector"]
    assert continued["continued_from"]["scorer_rounds_reused"] == 3
    assert continued["continued_from"]["figures"] == manifest["figures"]
    assert continued["continued_from"]["continued_from"] is None  # the bundle it continued was built from nothing
    assert continued["steps"][0] == step and continued["steps"][1]["continued_from"] == str(out)
    assert continued["steps"][1]["scorer_rounds"] == [4] and continued["steps"][1]["detector_runs"] == []
    assert [d[0] for d in continued["steps"][1]["data"]] == ["scorer_mix_low_2100", "scorer_mix_high_2200",
                                                             "calib_low_9501", "eval_low_9001", "eval_high_9001"]
    # continuing the continued bundle in the same work folder: no round is left, and the step says what
    # it found there instead of running it
    again_step = build(longer, tmp_path / "work2", tmp_path / "b2", continue_from=out)["steps"][-1]
    assert again_step["scorer_rounds"] == [] and set(again_step["found_in_work"]) >= {"scorer", "eval_high_9001"}
    again = json.loads((tmp_path / "work2" / "scorer_round4" / "train_config.json").read_text())
    assert again["init"] == str(tmp_path / "work2" / "scorer_round3")
    with pytest.raises(ValueError, match="continue_from: the bundle's recipe has det_stages"):
        build(dataclasses.replace(longer, det_stages="128:2"), tmp_path / "work3", tmp_path / "b3", continue_from=out)
    assert not (tmp_path / "b3").exists() and not (tmp_path / "work3").exists()

    # one half from nothing beside the other half of a bundle: only that half's data and runs, the other half's
    # bytes as they were, both calibrated and evaluated together
    from findbox.calibration import file_sha256

    half = build(recipe, tmp_path / "work_s", tmp_path / "half_s", part="scorer", reuse_from=out)
    (half_step,) = half["steps"]
    assert half_step["part"] == "scorer" and half_step["detector_runs"] == [] and half_step["scorer_rounds"] == [1, 2, 3]
    assert half_step["reused"] == {"detector": str(out / "detector.pt"), "sha256": file_sha256(out / "detector.pt")}
    assert (tmp_path / "half_s" / "detector.pt").read_bytes() == detector_bytes
    assert not (tmp_path / "work_s" / "det").exists() and not (tmp_path / "work_s" / "det_data").exists()
    assert (tmp_path / "work_s" / "scorer_round3" / "config.json").is_file()
    assert [d["run"] for d in half["training"]["detector"]] == [] and len(half["training"]["scorer"]) == 3
    assert read_calibration(tmp_path / "half_s" / "scorer") is not None and set(half["figures"]) == {"low", "high"}

    half = build(recipe, tmp_path / "work_d", tmp_path / "half_d", part="detector", reuse_from=out)
    (half_step,) = half["steps"]
    assert half_step["part"] == "detector" and half_step["scorer_rounds"] == []
    assert half_step["detector_runs"] == ["det", "det_finetune1", "det_finetune2"]
    assert half_step["reused"]["sha256"] == file_sha256(out / "scorer" / "model.safetensors")
    assert file_sha256(tmp_path / "half_d" / "scorer" / "model.safetensors") == half_step["reused"]["sha256"]
    assert not list((tmp_path / "work_d").glob("scorer_round*")) and not (tmp_path / "work_d" / "crops_6").exists()
    # the calibration record is this build's, made with its own detector, not the reused bundle's copy
    record = json.loads((tmp_path / "half_d" / "scorer" / "findbox_calibration.json").read_text())
    assert half_step["calibration"] == record["results"] and "work_d" in record["data"]["path"]
    with pytest.raises(ValueError, match="out: a build of one half writes a bundle of its own"):
        build(recipe, tmp_path / "work5", out, part="detector", reuse_from=out)
    with pytest.raises(ValueError, match="cannot also continue_from"):
        build(recipe, tmp_path / "work5", tmp_path / "b5", part="scorer", reuse_from=out, continue_from=out)
    with pytest.raises(ValueError, match="part: expected one of all, detector, scorer"):
        build(recipe, tmp_path / "work5", tmp_path / "b5", part="both")

    from findbox.factory import load_pipeline
    from findbox.synth import SynthConfig, generate_scene

    pipeline = load_pipeline(detector=str(out / "detector.pt"), scorer=str(out / "scorer"), device="cpu",
                             detection=manifest["serve"]["detection"])
    image, objects = generate_scene(SynthConfig(noise="low"), 0, seed=5)
    assert len(pipeline.ground_captions(image, [o.caption for o in objects])) == len(objects)
