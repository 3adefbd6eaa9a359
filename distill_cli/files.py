"""Writing a whole file so that readers see the old one or the new one, never half of either."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable


def write_atomically(path: str | Path, write: Callable) -> Path:
    """Call `write(binary file)` on a temporary name beside `path`, then rename it into place (or leave nothing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{secrets.token_hex(4)}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
