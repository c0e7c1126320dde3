#!/usr/bin/env python3
"""Command-line entry point of the keyedcache demo project (run from anywhere)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Put the demo project on sys.path and run Django's command line."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from demo_site import ensure_keyedcache_importable

    ensure_keyedcache_importable()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
