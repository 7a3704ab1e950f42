"""A data set's index stored in the workdir, keyed by the data's listing.

One JSON file per data set (`<kind>-<hash of its path>.json`) holds the hash of the listing it
was built from; a different listing (files added, removed, resized or touched) rebuilds it. Files
are written atomically (temporary file + `os.replace`) and never read or written through a link.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

INDEX_FOLDER = "data-index"   # below the workdir


def digest(value: Any) -> str:
    """SHA-256 of a JSON-serialisable value (a listing)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _file(cache_dir: Path, kind: str, ident: str) -> Path:
    return Path(cache_dir) / f"{kind}-{digest(ident)[:16]}.json"


def load_cached(cache_dir: Optional[Path], kind: str, ident: str, key: str) -> Optional[dict]:
    """The stored payload for `ident` when it was built from the listing of digest `key`."""
    if cache_dir is None:
        return None
    path = _file(cache_dir, kind, ident)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd) as f:
            stored = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("key") != key:
        return None
    return stored.get("payload")


def store_cached(cache_dir: Optional[Path], kind: str, ident: str, key: str,
                 payload: dict) -> None:
    """Store `payload` for `ident`, built from the listing of digest `key` (nothing without a
    cache folder)."""
    if cache_dir is None:
        return
    cache_dir = Path(cache_dir)
    if cache_dir.is_symlink():
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = _file(cache_dir, kind, ident)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with os.fdopen(os.open(temporary, flags, 0o644), "w") as f:
        json.dump({"key": key, "payload": payload}, f)
    os.replace(temporary, path)
