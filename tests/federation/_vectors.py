"""Loading the spec's test vectors, copied into ``tests/federation/vectors`` (see SOURCE.md there)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS_DIR = Path(__file__).parent / "vectors"


def load(name: str) -> Any:
    """Parse one vector file (``canonical-json.json`` …)."""
    return json.loads((VECTORS_DIR / name).read_text(encoding="utf-8"))
