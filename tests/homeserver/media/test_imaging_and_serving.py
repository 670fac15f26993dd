"""Pure pieces of the media repository: thumbnail geometry, decoding, ranges, dispositions."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from homeserver.api.media._serve import RangeNotSatisfiable, content_disposition, parse_range
from homeserver.services.imaging import ImageError, crop_size, probe, render, scale_size


@pytest.mark.parametrize(
    "src, box, expected",
    [
        ((640, 480), (320, 240), (320, 240)),
        ((1000, 100), (320, 240), (320, 32)),  # width limits
        ((100, 1000), (320, 240), (24, 240)),  # height limits
        ((200, 100), (320, 240), (200, 100)),  # never upscaled
        ((5000, 1), (32, 32), (32, 1)),  # never 0
    ],
)
def test_scale_size(src, box, expected):
    assert scale_size(src, box) == expected


@pytest.mark.parametrize(
    "src, box, expected",
    [
        ((640, 480), (96, 96), (96, 96)),
        ((640, 480), (50, 20), (50, 20)),
        ((40, 30), (96, 96), (30, 30)),  # smaller image: the box shrinks, same aspect
        ((40, 30), (100, 50), (40, 20)),
        ((1, 1), (32, 32), (1, 1)),
    ],
)
def test_crop_size(src, box, expected):
    assert crop_size(src, box) == expected


def _image(fmt: str, size: tuple[int, int], frames: int = 1) -> io.BytesIO:
    out = io.BytesIO()
    ims = [Image.new("RGB", size, (i * 60 % 255, 0, 0)) for i in range(frames)]
    if frames > 1:
        ims[0].save(out, fmt, save_all=True, append_images=ims[1:], duration=50)
    else:
        ims[0].save(out, fmt)
    out.seek(0)
    return out


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_probe_and_render_each_format(fmt):
    info = probe(_image(fmt, (300, 200)))
    assert (info.format, info.width, info.height, info.frames) == (fmt, 300, 200, 1)
    made = render(_image(fmt, (300, 200)), [(32, 32, "crop"), (100, 100, "scale")])
    sizes = [Image.open(io.BytesIO(m.data)).size for m in made]
    assert sizes == [(32, 32), (100, 66)]
    assert [(m.width, m.height) for m in made] == sizes
    assert made[0].content_type == ("image/jpeg" if fmt == "JPEG" else "image/png")


def test_animated_render_keeps_frames():
    made = render(_image("GIF", (120, 80), frames=4), [(60, 60, "crop")], animated=True)[0]
    im = Image.open(io.BytesIO(made.data))
    assert made.content_type == "image/webp" and im.size == (60, 60)
    assert getattr(im, "n_frames", 1) == 4
    still = render(_image("GIF", (120, 80), frames=4), [(60, 60, "crop")])[0]
    assert still.content_type == "image/png"


@pytest.mark.parametrize(
    "data", [b"", b"hello", b"%PDF-1.4 ...", b"<svg xmlns='http://www.w3.org/2000/svg'/>"]
)
def test_probe_refuses_non_images(data):
    with pytest.raises(ImageError):
        probe(io.BytesIO(data))


def test_render_refuses_truncated_image():
    data = _image("PNG", (300, 300)).getvalue()[:120]
    with pytest.raises(ImageError):
        render(io.BytesIO(data), [(32, 32, "crop")])


@pytest.mark.parametrize(
    "header, expected",
    [
        (None, None),
        ("bytes=0-9", (0, 10)),
        ("bytes=10-", (10, 100)),
        ("bytes=-10", (90, 100)),
        ("bytes=-1000", (0, 100)),
        ("bytes=95-200", (95, 100)),
        ("bytes=0-1,4-5", None),  # several ranges: the whole content
        ("bytes=9-3", None),  # invalid: ignored
        ("items=0-9", None),
        ("bytes=-", None),
        ("garbage", None),
    ],
)
def test_parse_range(header, expected):
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=500-600", "bytes=-0"])
def test_parse_range_unsatisfiable(header):
    with pytest.raises(RangeNotSatisfiable) as e:
        parse_range(header, 100)
    assert e.value.status == 416 and e.value.headers["Content-Range"] == "bytes */100"


@pytest.mark.parametrize(
    "content_type, name, expected",
    [
        ("image/png", None, "inline"),
        ("IMAGE/PNG", "a.png", 'inline; filename="a.png"'),
        ("text/plain; charset=utf-8", "a b.txt", 'inline; filename="a b.txt"'),
        ("text/html", "x.html", 'attachment; filename="x.html"'),
        ("image/svg+xml", None, "attachment"),
        ("application/xhtml+xml", None, "attachment"),
        ("application/octet-stream", 'q"uote', "attachment; filename*=utf-8''q%22uote"),
        ("image/png", "naïve.png", "inline; filename*=utf-8''na%C3%AFve.png"),
        ("image/png", "a\r\nb", "inline; filename*=utf-8''a%0D%0Ab"),
        ("image/png", "a;b=c", 'inline; filename="a;b=c"'),
    ],
)
def test_content_disposition(content_type, name, expected):
    assert content_disposition(content_type, name) == expected
