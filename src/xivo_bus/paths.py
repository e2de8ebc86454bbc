"""Where xivo-bus keeps its files."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_dir() -> Path:
    """``$XIVO_BUS_DATA_DIR``, else ``$XDG_DATA_HOME/xivo-bus``, else
    ``~/.local/share/xivo-bus``."""
    explicit = os.environ.get("XIVO_BUS_DATA_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "xivo-bus"


def private_dir(path: Path) -> None:
    """Create the directory ``path`` readable by its owner only (0700), with any missing
    parents (those with the usual mode). An existing directory is left as it is: its
    owner chose its mode."""
    path = Path(path)
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)


def private_database(path: Path) -> None:
    """Make sure the SQLite database file ``path`` exists and only its owner may read it,
    before SQLite opens it: created mode 0600 (never wider, not even for an instant), an
    existing one narrowed to 0600. SQLite gives the ``-wal`` and ``-shm`` files it makes
    the mode of the database file, so they are private from the start too; any left from
    before are narrowed here as well."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(descriptor).st_mode & 0o077:
            os.fchmod(descriptor, 0o600)
    finally:
        os.close(descriptor)
    for suffix in ("-wal", "-shm"):
        companion = Path(f"{path}{suffix}")
        try:
            if companion.stat().st_mode & 0o077:
                companion.chmod(0o600)
        except FileNotFoundError:
            pass
