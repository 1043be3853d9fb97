import argparse

import pytest

from findbox.cli import add_model_options, serve_config_from_args
from findbox.config import DetectorConfig, Fallback, PipelineConfig, ServeConfig, from_dict


def parse(argv):
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    return serve_config_from_args(parser.parse_args(argv)).pipeline


def test_defaults_are_the_originals_best():
    c = ServeConfig()
    d = c.pipeline.detection
    assert (d.imgsz, d.conf, d.iou, d.max_det) == (1600, 0.1, 0.1, 10)
    assert c.server.port == 5004 and c.server.host == "0.0.0.0" and c.pipeline.fallback == Fallback.IMAGE


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ValueError, match="did you mean 'imgsz'"):
        from_dict(DetectorConfig, {"imgsize": 640})


@pytest.mark.parametrize("field, value", [("conf", 1.5), ("iou", -0.1), ("max_det", 0), ("imgsz", 8)])
def test_out_of_range_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        DetectorConfig(**{field: value})


def test_flags_override_toml_which_overrides_defaults(tmp_path):
    toml = tmp_path / "findbox.toml"
    toml.write_text('scorer = "s"\nconf = 0.3\nfallback = "zeros"\n[detection]\nimgsz = 640\n')
    c = parse(["--config", str(toml), "--conf", "0.5"])
    assert c.scorer == "s" and c.detection.imgsz == 640 and c.detection.conf == 0.5 and c.fallback == Fallback.ZEROS


def test_toml_unknown_key(tmp_path):
    toml = tmp_path / "bad.toml"
    toml.write_text("scorrer = 'x'\n")
    with pytest.raises(ValueError, match="scorer"):
        parse(["--config", str(toml)])


def test_bad_enum_value():
    with pytest.raises(ValueError, match="fallback: expected one of image, zeros"):
        PipelineConfig(fallback="nearest")


def test_flat_serve_toml_splits_into_pipeline_and_server(tmp_path):
    toml = tmp_path / "serve.toml"
    toml.write_text('scorer = "s"\nport = 6000\nno_upscaler = true\nimgsz = 640\n[detection]\nconf = 0.3\n')
    from findbox.config import load_toml

    c = ServeConfig.from_dict(load_toml(toml))
    assert c.server.port == 6000 and c.pipeline.scorer == "s" and c.pipeline.no_upscaler
    assert (c.pipeline.detection.imgsz, c.pipeline.detection.conf) == (640, 0.3)
    with pytest.raises(ValueError, match="did you mean 'max_instances'"):
        ServeConfig.from_dict({"max_instance": 1})


def test_serve_flags_and_toml_reach_the_server_config(tmp_path):
    from findbox.cli import add_options
    from findbox.config import ServerConfig

    toml = tmp_path / "serve.toml"
    toml.write_text('port = 6000\nmax_instances = 8\nconf = 0.2\n')
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    add_options(parser, ServerConfig, "server")
    c = serve_config_from_args(parser.parse_args(["--config", str(toml), "--port", "7000", "--no-warmup"]))
    assert (c.server.port, c.server.max_instances, c.server.warmup) == (7000, 8, False)
    assert c.pipeline.detection.conf == 0.2


def test_help_shows_field_defaults_and_the_bundles(capsys):
    from findbox.bundle import bundle_ranking_defaults

    parser = argparse.ArgumentParser()
    add_model_options(parser)
    text = " ".join(parser.format_help().split())
    assert "boxes per image (default 10" in text and "(default 1x1 = off)" in text
    if bundle_ranking_defaults().get("score_fusion") == "product":
        assert "(default scorer; product with the bundled demo detector and scorer)" in text
