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
