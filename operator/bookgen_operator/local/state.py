"""The state folder of `bookgen up` (./.bookgen by default): the files other commands read to find it.

`bookgen up` holds `lock` (flock) while it runs and records in `connection.json` (mode 0600: the URL
holds the password) how to reach its Redis; cli/target.py reads both to find this system.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CONNECTION_FILE = "connection.json"
LOCK_FILE = "lock"


def write_connection(state_dir: Path, redis_url: str, **extra: str) -> Path:
    """Record how to reach this `bookgen up` (0600: the URL holds the password)."""
    path = state_dir / CONNECTION_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"redis_url": redis_url, **extra}, f)
    os.replace(tmp, path)
    return path
