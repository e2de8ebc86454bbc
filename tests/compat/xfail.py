"""The one list of what our broker does not do yet.

Scenarios covering any extension named here are expected to fail against our broker
(``xfail``, not strict). Remove an entry when the feature lands: its scenarios then have to
pass, and docs/compatibility.md may call it supported.
"""

from __future__ import annotations

NOT_IMPLEMENTED_YET: set[str] = set()

REASON = "extension not implemented yet"


def pending(covers) -> list[str]:
    """The not-yet-implemented extensions among ``covers``."""
    return sorted(set(covers) & NOT_IMPLEMENTED_YET)
