"""Image decoding and thumbnail rendering with Pillow: blocking code for a worker thread.

Spec: client-server-api/modules/content_repo.md › Thumbnails. Two methods:

- ``scale`` keeps the aspect ratio and fits the image inside the box (one side equals the box,
  the other is smaller), never upscaling;
- ``crop`` returns exactly the box's size (the central part of the image scaled to cover it);
  when the image is smaller than the box, the box shrinks keeping its aspect ratio, since a
  server MUST NOT upscale.

Only JPEG, PNG (and APNG), GIF and WebP are decoded. :func:`probe` reads the header only, so the
caller can refuse decompression bombs (huge dimensions in a small file) before any pixel is
decoded. Static thumbnails are JPEG for JPEG sources and PNG otherwise (transparency survives);
animated ones (``animated=true`` on an animated source) are animated WebP, as the spec prefers.

Nothing here touches Trio or the database: the thumbnail service calls it through
``trio.to_thread``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, Literal

from PIL import Image, ImageOps, ImageSequence

__all__ = [
    "FORMAT_CONTENT_TYPES",
    "ImageError",
    "ImageInfo",
    "ImageTooLarge",
    "Rendered",
    "crop_size",
    "probe",
    "render",
    "scale_size",
]

Method = Literal["crop", "scale"]

#: The formats we decode, and the content type each is served as.
FORMAT_CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
}

#: Frames an animated thumbnail keeps at most (the rest of a long animation is dropped).
MAX_ANIMATED_FRAMES = 300


class ImageError(Exception):
    """The content is not an image we can decode (or it is corrupt)."""


class ImageTooLarge(ImageError):
    """Pillow itself refused the image as a decompression bomb (far too many pixels)."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the header of an image says."""

    format: str
    width: int
    height: int
    frames: int

    @property
    def content_type(self) -> str:
        return FORMAT_CONTENT_TYPES[self.format]

    @property
    def animated(self) -> bool:
        return self.frames > 1


@dataclass(frozen=True, slots=True)
class Rendered:
    """One thumbnail: its bytes, type and pixel size."""

    data: bytes
    content_type: str
    width: int
    height: int


def probe(fh: BinaryIO) -> ImageInfo:
    """Read the image header (no pixel data).

    Raises:
        ImageError: not a JPEG, PNG, GIF or WebP image.
    """
    try:
        with Image.open(fh, formats=list(FORMAT_CONTENT_TYPES)) as im:
            frames = int(getattr(im, "n_frames", 1) or 1)
            if im.format not in FORMAT_CONTENT_TYPES:
                raise ImageError(f"unsupported format {im.format}")
            return ImageInfo(im.format, im.width, im.height, frames)
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(str(e)) from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(str(e)) from None


def scale_size(src: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The size of a ``scale`` thumbnail: fit inside ``box``, keep the aspect, never upscale."""
    sw, sh = src
    w, h = box
    if sw <= w and sh <= h:
        return sw, sh
    if w * sh < h * sw:
        return w, max(1, (w * sh) // sw)
    return max(1, (h * sw) // sh), h


def crop_size(src: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The size of a ``crop`` thumbnail: the box, shrunk (same aspect) to fit a smaller image."""
    sw, sh = src
    w, h = box
    factor = min(sw / w, sh / h, 1.0)
    return max(1, math.floor(w * factor)), max(1, math.floor(h * factor))


def _crop_region(src: tuple[int, int], out: tuple[int, int]) -> tuple[float, float, float, float]:
    """The central region of the source with the output's aspect ratio."""
    sw, sh = src
    ow, oh = out
    if sw * oh > ow * sh:  # source is wider: full height
        cw = sh * ow / oh
        left = (sw - cw) / 2
        return left, 0.0, left + cw, float(sh)
    ch = sw * oh / ow
    top = (sh - ch) / 2
    return 0.0, top, float(sw), top + ch


def _resize(im: Image.Image, box: tuple[int, int], method: Method) -> Image.Image:
    if method == "scale":
        size = scale_size(im.size, box)
        if size == im.size:
            return im.copy()
        return im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    size = crop_size(im.size, box)
    region = _crop_region(im.size, size)
    return im.resize(size, Image.Resampling.LANCZOS, box=region, reducing_gap=3.0)


def _normalise_mode(im: Image.Image) -> Image.Image:
    if im.mode in ("RGB", "RGBA", "L", "LA"):
        return im
    if im.mode == "P" and "transparency" in im.info:
        return im.convert("RGBA")
    if im.mode in ("P", "CMYK", "YCbCr", "I", "F", "1") or im.mode.startswith("I;"):
        return im.convert("RGBA" if im.mode == "P" else "RGB")
    return im.convert("RGBA")


def _encode_static(im: Image.Image, source_format: str) -> tuple[bytes, str]:
    out = io.BytesIO()
    if source_format == "JPEG":
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
        im.save(out, "JPEG", quality=80, optimize=True)
        return out.getvalue(), "image/jpeg"
    im.save(out, "PNG", optimize=False, compress_level=6)
    return out.getvalue(), "image/png"


def render(
    fh: BinaryIO, boxes: Sequence[tuple[int, int, Method]], *, animated: bool = False
) -> list[Rendered]:
    """Decode the image once and make one thumbnail per box.

    Args:
        fh: the source image, positioned at its start.
        boxes: ``(width, height, method)`` per thumbnail.
        animated: make animated WebP thumbnails of an animated source (else the first frame).

    Raises:
        ImageError: the image cannot be decoded.
    """
    try:
        with Image.open(fh, formats=list(FORMAT_CONTENT_TYPES)) as im:
            source_format = str(im.format)
            if animated and int(getattr(im, "n_frames", 1)) > 1:
                return [_render_animated(im, (w, h), m) for w, h, m in boxes]
            if source_format == "JPEG" and boxes:
                # Let libjpeg decode at a reduced scale: never below what any box needs.
                side = max(max(w, h) for w, h, _ in boxes)
                im.draft("RGB", (side, side))
            im.load()
            frame = _normalise_mode(ImageOps.exif_transpose(im))
            out: list[Rendered] = []
            for w, h, method in boxes:
                thumb = _resize(frame, (w, h), method)
                data, content_type = _encode_static(thumb, source_format)
                out.append(Rendered(data, content_type, thumb.width, thumb.height))
            return out
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise ImageError(str(e)) from None


def _render_animated(im: Image.Image, box: tuple[int, int], method: Method) -> Rendered:
    frames: list[Image.Image] = []
    durations: list[int] = []
    for i, frame in enumerate(ImageSequence.Iterator(im)):
        if i >= MAX_ANIMATED_FRAMES:
            break
        durations.append(int(frame.info.get("duration", 100) or 100))
        frames.append(_resize(frame.convert("RGBA"), box, method))
    out = io.BytesIO()
    frames[0].save(
        out,
        "WEBP",
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=0,
        quality=75,
        method=2,
    )
    return Rendered(out.getvalue(), "image/webp", frames[0].width, frames[0].height)
