"""Request and response shapes, and turning a request into pipeline inputs.

`/identify` is byte-compatible with the original service; `/v1/ground` is the
richer form with every candidate and its scores.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from findbox.images import EncodedImage, ImageTooLarge, decode_b64


class Instance(BaseModel):
    model_config = ConfigDict(extra="ignore")

    key: int | str | None = Field(None, description="Optional client key, echoed by /v1/ground.")
    caption: StrictStr = Field(..., description="What to find, e.g. 'grey missile'.")
    b64: StrictStr = Field(..., description="The image file (JPEG, PNG, ...) as standard base64.")

    @field_validator("key", "caption")
    @classmethod
    def _encodable(cls, value):
        """JSON may carry a lone surrogate ("\\ud800"), which no tokenizer and no UTF-8 answer can take."""
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(f"expected valid Unicode text, got a lone surrogate at character {exc.start}") from None
        return value


# an 8x8 blue PNG: the schema's example is a request that really works (schemathesis sends it)
EXAMPLE_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFElEQVR4nGOM6rnDgA0wYRUdtBIAYqEB0uqBxYoAAAAASUVORK5CYII="


class IdentifyRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"instances": [{"key": 0, "caption": "grey missile", "b64": EXAMPLE_B64},
                       {"key": 1, "caption": "yellow drone", "b64": EXAMPLE_B64}]}]})

    instances: list[Instance]


class IdentifyResponse(BaseModel):
    predictions: list[list[float]] = Field(..., description="One [left, top, width, height] per instance, in order.")


class CandidateOut(BaseModel):
    box: list[float] = Field(..., description="[left, top, width, height] in image pixels.")
    det_conf: float
    score: float | None = Field(..., description="Scorer logit of this crop against the caption.")


class GroundingOut(BaseModel):
    key: int | str | None
    box: list[float]
    chosen: int = Field(..., description="Index of the chosen candidate; -1 when the fallback box was returned.")
    fallback: bool
    image_wh: list[int]
    candidates: list[CandidateOut]


class GroundResponse(BaseModel):
    results: list[GroundingOut]
    timings_ms: dict[str, float] = Field(..., description="Milliseconds per stage: decode, queue, detect, "
                                         "crop_upscale, embed_images, embed_texts, choose, total.")


class ErrorOut(BaseModel):
    detail: str = Field(..., description="What is wrong, starting with where: 'instances[3].b64: ...'.")
    index: int | None = Field(None, description="The offending instance, when one is to blame.")
    field: str | None = Field(None, description="The offending field: body, instances, caption, b64, request.")


@dataclass
class InstanceError(Exception):
    """A bad field in one instance; the server answers `status` naming both."""

    index: int | None
    field: str
    message: str
    status: int = 400

    def __str__(self) -> str:
        where = f"instances[{self.index}].{self.field}" if self.index is not None else self.field
        return f"{where}: {self.message}"


def decode_instances(
    instances: list[Instance], max_instances: int, max_image_pixels: int, max_request_pixels: int | None = None
) -> tuple[list[EncodedImage], list[tuple[int, str]]]:
    """Distinct images (each base64 string read once) and (image index, caption) queries.

    Only the image headers are read here: the pixels are decoded by the pipeline, chunk by
    chunk, in the model worker. max_request_pixels: the decoded pixels of all distinct images
    together (None: no bound), checked from the headers so a request over it is refused (413)
    before any pixel is decoded.
    """
    if len(instances) > max_instances:
        raise InstanceError(None, "instances", f"{len(instances)} instances, above the cap of {max_instances}", 413)
    images: list[EncodedImage] = []
    index_of: dict[str, int] = {}
    queries = []
    pixels = 0
    for i, inst in enumerate(instances):
        if inst.b64 not in index_of:
            try:
                image = EncodedImage.probe(decode_b64(inst.b64), max_image_pixels)
            except ImageTooLarge as exc:
                raise InstanceError(i, "b64", str(exc), 413) from None
            except ValueError as exc:
                raise InstanceError(i, "b64", str(exc), 400) from None
            pixels += image.pixels
            if max_request_pixels is not None and pixels > max_request_pixels:
                raise InstanceError(i, "b64", f"the request's distinct images hold {pixels} pixels up to here, above "
                                    f"the request budget of {max_request_pixels} (--max-request-pixels)", 413)
            index_of[inst.b64] = len(images)
            images.append(image)
        queries.append((index_of[inst.b64], inst.caption))
    return images, queries


def first_instance(queries: list[tuple[int, str]], image_index: int) -> int:
    """The instance that brought image `image_index` (queries are one per instance, in order)."""
    return next(q for q, (index, _) in enumerate(queries) if index == image_index)


def round_box(values) -> list[float]:
    return [float(v) for v in values]
