import argparse

import pytest

from findbox.cli_options import add_model_arguments, config_from_args
from findbox.config import DetectorConfig, Fallback, ServeConfig, from_dict


def parse(argv):
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    return config_from_args(parser.parse_args(argv))


def test_defaults_are_the_originals_best():
    c = ServeConfig()
    assert (c.detection.imgsz, c.detection.conf, c.detection.iou, c.detection.max_det) == (1600, 0.1, 0.1, 10)
    assert c.port == 5004 and c.host == "0.0.0.0" and c.fallback == Fallback.IMAGE


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
        ServeConfig(fallback="nearest")
