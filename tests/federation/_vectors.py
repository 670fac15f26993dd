"""Loading the spec's test vectors from ``shared/matrix-spec/test-vectors`` beside the repo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS_DIR = Path(__file__).parents[2].parent / "shared" / "matrix-spec" / "test-vectors"


def load(name: str) -> Any:
    """Parse one vector file (``canonical-json.json`` …)."""
    return json.loads((VECTORS_DIR / name).read_text(encoding="utf-8"))
