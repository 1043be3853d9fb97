"""The prompt template check: one `{}` for the caption, nothing else to format."""

import subprocess
import sys

import pytest

from findbox.config import PipelineConfig
from findbox.score.preprocess import DEFAULT_PROMPTS, check_prompt, format_prompt


@pytest.mark.parametrize("template, text", [
    ("{}", "red car"),
    ("This is a photo of {}.", "This is a photo of red car."),
    ("{{literal}} {}", "{literal} red car"),  # escaped braces are text
    ("a {} in {{braces}}}}", "a red car in {braces}}"),
])
def test_good_templates_pass_and_format(template, text):
    assert check_prompt(template) == template
    assert format_prompt(template, "  red car ") == text


@pytest.mark.parametrize("template, why", [
    ("a photo", "no {} for the caption"),
    ("", "no {} for the caption"),
    ("{x}", "{x}"),
    ("{0}", "{0}"),
    ("{} and {}", "2 placeholders"),
    ("{!r}", "{!r}"),
    ("{:>10}", "{:>10}"),
    ("a {", "Single '{'"),
    ("a }", "Single '}'"),
])
def test_bad_templates_are_refused_naming_prompt(template, why):
    with pytest.raises(ValueError) as info:
        check_prompt(template)
    message = str(info.value)
    assert message.startswith("prompt: expected a template with exactly one {} for the caption")
    assert why in message and repr(template) in message


def test_family_defaults_pass():
    for template in DEFAULT_PROMPTS.values():
        check_prompt(template)


def test_config_checks_the_prompt():
    assert PipelineConfig(prompt="a {} here").prompt == "a {} here"
    assert PipelineConfig().prompt is None  # the family's default, chosen at load
    with pytest.raises(ValueError, match=r"^prompt: expected a template"):
        PipelineConfig(prompt="a photo")


@pytest.mark.parametrize("prompt", ["a photo", "{x}"])
def test_serve_with_a_bad_prompt_exits_2_before_loading(prompt):
    r = subprocess.run([sys.executable, "-m", "findbox.cli", "serve", "--prompt", prompt],
                       check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "findbox serve: error: prompt: expected a template with exactly one {}" in r.stderr


def test_every_scorer_checks_its_prompt():
    """A scorer .toml's prompt, a training config's or a family default all reach Scorer.__init__."""
    import torch

    from findbox.score.base import Scorer
    from findbox.score.preprocess import CropPreprocess
    from tests.test_scorer_base import MeanColour

    class PromptedMeanColour(MeanColour):
        def __init__(self, prompt: str):
            Scorer.__init__(self, CropPreprocess((4, 4), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), prompt,
                            torch.device("cpu"))

    assert PromptedMeanColour("a {} here").prompt == "a {} here"
    with pytest.raises(ValueError, match=r"^prompt: expected a template"):
        PromptedMeanColour("{x}")
