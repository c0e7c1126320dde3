"""The demo project's settings package; also makes `keyedcache` importable from the checkout."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

#: test_app/ (this project) and the repository root above it.
PROJECT_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = PROJECT_DIR.parent


def ensure_keyedcache_importable() -> None:
    """Use the installed `keyedcache`, or else the one in the repository root.

    The repository root goes at the end of sys.path, so an installed package
    (editable or not) wins and a bare checkout still runs.
    """
    if importlib.util.find_spec("keyedcache") is not None:
        return
    if (REPO_ROOT / "keyedcache" / "__init__.py").is_file() and str(REPO_ROOT) not in sys.path:
        sys.path.append(str(REPO_ROOT))
