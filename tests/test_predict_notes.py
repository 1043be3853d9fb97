"""`findbox predict` says what it did not read as given: a non-image file by name (no Python reprs),
a run where no input could be read, an empty caption and a caption cut to the scorer's text length."""

from __future__ import annotations

import pytest

from findbox.images import decode_image, probe_image
from tests.test_predict import model_args, predict, write_png  # noqa: F401  (model_args is a fixture)
from tests.conftest import CAPTIONS


@pytest.mark.parametrize("read", [decode_image, probe_image])
def test_a_non_image_names_no_python_object(read):
    with pytest.raises(ValueError) as caught:
        read(b"just some text, not an image")
    message = str(caught.value)
    assert message.startswith("not a decodable image") and "object at 0x" not in message and "BytesIO" not in message


def test_a_single_unreadable_file_is_named_and_nothing_said_of_others(tmp_path, model_args, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list")
    code, lines, err = predict([str(notes), "--caption", CAPTIONS[0], *model_args], capsys)
    assert code == 1 and lines == []
    assert f"{notes}: not a decodable image" in err and "object at 0x" not in err
    assert "the others were answered" not in err and "none of the 1 input(s) could be read" in err


def test_one_of_two_unreadable_says_the_other_was_answered(tmp_path, model_args, capsys):
    good, bad = tmp_path / "a.png", tmp_path / "b.png"
    write_png(good, seed=5)
    bad.write_bytes(b"nope")
    code, lines, err = predict([str(good), str(bad), "--caption", CAPTIONS[0], *model_args], capsys)
    assert code == 1 and len(lines) == 1
    assert "1 of 2 input(s) could not be read; the other 1 were answered" in err


def test_empty_and_truncated_captions_are_noted_once_each(tmp_path, model_args, capsys):
    images = [tmp_path / "a.png", tmp_path / "b.png"]
    for k, path in enumerate(images):
        write_png(path, seed=30 + k)
    long = "a long and winding description " * 800  # ~26 kB
    code, lines, err = predict([*map(str, images), "--caption", "", "--caption", long, "--caption", CAPTIONS[0],
                                *model_args], capsys)
    assert code == 0 and len(lines) == 6
    assert err.count("empty caption") == 1 and "the detector's most confident box answers it" in err
    assert err.count("is cut to") == 1 and "tokens" in err
    assert CAPTIONS[0] not in err  # a caption that fits is not mentioned
