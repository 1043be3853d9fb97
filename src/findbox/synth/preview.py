"""A picture of a scene for people: boxes and captions, the clean scene, zoomed crops.

    python -m findbox.synth.preview docs/synth_sample.png --seed 0 --index 0 --noise medium
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from findbox.synth.noise import NoiseLevel
from findbox.synth.scene import SynthConfig, SynthObject, generate_scene, render_clean

_BOX_RGB = (255, 40, 40)


def draw_boxes(
    image: np.ndarray, objects: Sequence[SynthObject], scale: float = 1.0, captions: bool = True
) -> Image.Image:
    """(H, W, 3) uint8 RGB -> PIL image resized by `scale`, boxes and captions drawn on it."""
    h, w, _ = image.shape
    out = Image.fromarray(image).resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=12)
    for o in objects:
        l, t, bw, bh = (v * scale for v in o.bbox_ltwh)
        draw.rectangle([l - 1, t - 1, l + bw, t + bh], outline=_BOX_RGB, width=1)
        if not captions:
            continue
        text_w = draw.textlength(o.caption, font=font)
        xy = (min(l, out.width - text_w - 2), t - 14 if t >= 14 else t + bh + 2)  # keep the text inside
        x0, y0, x1, y1 = draw.textbbox(xy, o.caption, font=font)
        draw.rectangle([x0 - 1, y0 - 1, x1 + 1, y1 + 1], fill=(0, 0, 0))
        draw.text(xy, o.caption, fill=(255, 255, 255), font=font)
    return out


def crops_strip(image: np.ndarray, objects: Sequence[SynthObject], cell: int) -> Image.Image:
    """One row of square cells: each object's box, zoomed to fit, with its caption."""
    strip = Image.new("RGB", (cell * len(objects), cell + 26), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default(size=10)
    for i, o in enumerate(objects):
        l, t, w, h = o.bbox_ltwh
        pad = max(w, h) // 6
        crop = Image.fromarray(image[max(0, t - pad) : t + h + pad, max(0, l - pad) : l + w + pad])
        zoom = (cell - 4) / max(crop.size)
        size = (max(1, round(crop.width * zoom)), max(1, round(crop.height * zoom)))
        crop = crop.resize(size, Image.Resampling.NEAREST if zoom > 1 else Image.Resampling.LANCZOS)
        strip.paste(crop, (i * cell + (cell - crop.width) // 2, (cell - crop.height) // 2))
        text = o.caption
        if draw.textlength(text, font=font) > cell - 4:  # type on a line of its own
            text = text[: -len(o.object_type)].rstrip() + "\n" + o.object_type
        draw.multiline_text((i * cell + 2, cell + 1), text, fill=(0, 0, 0), font=font, spacing=1)
    return strip


def preview(config: SynthConfig, index: int, seed: int, width: int = 1000) -> Image.Image:
    """Stacked: the scene at config.noise with boxes and captions, its objects zoomed,
    then the same scene clean and at high noise side by side (boxes only)."""
    noisy, objects = generate_scene(config, index, seed)
    scale = width / config.width
    top = draw_boxes(noisy, objects, scale)
    strip = crops_strip(noisy, objects, cell=width // max(len(objects), 1))
    clean = render_clean(config, index, seed)
    high, _ = generate_scene(dataclasses.replace(config, noise=NoiseLevel.HIGH), index, seed)
    half = [draw_boxes(img, objects, scale / 2, captions=False) for img in (clean.image, high)]
    font = ImageFont.load_default(size=14)
    for im, label in zip(half, ("clean", "high noise"), strict=True):
        draw = ImageDraw.Draw(im)
        draw.text((6, 4), label, fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0))
    out = Image.new("RGB", (width, top.height + strip.height + half[0].height), (255, 255, 255))
    out.paste(top, (0, 0))
    out.paste(strip, (0, top.height))
    out.paste(half[0], (0, top.height + strip.height))
    out.paste(half[1], (width - half[1].width, top.height + strip.height))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="a .png path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--noise", choices=[n.value for n in NoiseLevel], default="medium")
    parser.add_argument("--width", type=int, default=1000, help="width of the picture, px")
    args = parser.parse_args(argv)
    config = dataclasses.replace(SynthConfig(), noise=NoiseLevel(args.noise))
    preview(config, args.index, args.seed, args.width).save(args.out, optimize=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
