"""Which box a thumbnail request is answered from, with and without dynamic thumbnails."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from homeserver.config import MediaConfig
from homeserver.services.thumbnails import ThumbnailService


def _service(**config: Any) -> ThumbnailService:
    cfg = dataclasses.replace(MediaConfig(), **config)
    return ThumbnailService(None, None, None, None, cfg)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("request_box", "method", "expected"),
    [
        ((100, 100), "scale", (100, 100)),  # exactly what was asked, never a bigger size
        ((600, 450), "scale", (600, 450)),
        ((32, 32), "crop", (32, 32)),
        ((5000, 5000), "scale", (4000, 4000)),  # capped
    ],
)
def test_dynamic_thumbnails_make_the_requested_size(request_box, method, expected) -> None:
    service = _service(dynamic_thumbnails=True, max_thumbnail_dimension=4000)
    assert service.choose_box(*request_box, method) == expected


@pytest.mark.parametrize(
    ("request_box", "method", "expected"),
    [
        ((100, 100), "scale", (320, 240)),  # the smallest configured size covering it
        ((600, 450), "scale", (640, 480)),
        ((50, 20), "crop", (96, 96)),  # no crop of that ratio covers it: the nearest
        ((2000, 2000), "scale", (800, 600)),  # none covers it: the largest
    ],
)
def test_without_dynamic_thumbnails_a_configured_size(request_box, method, expected) -> None:
    service = _service(dynamic_thumbnails=False)
    assert service.choose_box(*request_box, method) == expected
