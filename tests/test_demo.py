"""The demo project's public pages (test_app/demo) never show where the cache is.

The demo runs in a child process with its own settings (demo_site.settings),
a scratch SQLite database and a Redis LOCATION whose password holds "@", a
space, "/", "?", "#" and ":". Anonymous visitors see the backend's class only;
staff see the location with the password masked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "p@ss w/rd?x#y:z"
LOCATION = f"redis://admin:{PASSWORD}@127.0.0.1:1/0?password=q-s3cret"

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import django
    from django.conf import settings

    django.setup()
    settings.DATABASES["default"]["NAME"] = sys.argv[1]
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import override_settings, setup_test_environment

    setup_test_environment()
    call_command("migrate", verbosity=0)
    config = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": sys.argv[2]}
    pages = {}
    with override_settings(CACHES={"default": config}, ALLOWED_HOSTS=["testserver"]):
        anonymous = Client()
        pages["anonymous"] = anonymous.get("/").content.decode()
        staff = Client()
        staff.force_login(User.objects.create_user("boss", is_staff=True))
        pages["staff"] = staff.get("/").content.decode()
        from django.views.debug import get_default_exception_reporter_filter

        safe = get_default_exception_reporter_filter().get_safe_settings()
        pages["debug_settings"] = repr(safe["CACHES"])
    from demo_site.cache_config import redact

    pages["redacted"] = redact(sys.argv[2])
    print(json.dumps(pages))
    """
)


def run_demo(tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo_site.settings",
        "PYTHONPATH": os.pathsep.join([str(REPO / "test_app"), str(REPO)]),
    }
    env.pop("KEYEDCACHE_DEMO_CACHE", None)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "demo.sqlite3"), LOCATION],
        cwd=REPO / "test_app",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    pages: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return pages


def test_public_pages_show_no_location_and_staff_see_it_masked(tmp_path: Path) -> None:
    pages = run_demo(tmp_path)
    anonymous, staff = pages["anonymous"], pages["staff"]
    assert "default: RedisCache" in anonymous
    for secret in ("p@ss", "w/rd", "x#y", "q-s3cret", "127.0.0.1", "redis://"):
        assert secret not in anonymous, secret
    assert "redis://********@127.0.0.1:1/0?password=********" in staff
    for secret in ("p@ss", "ss w", "w/rd", "x#y", "q-s3cret", "admin:"):
        assert secret not in staff, secret


def test_debug_pages_and_the_setup_command_mask_the_location(tmp_path: Path) -> None:
    # The demo runs with DEBUG on: its 500 pages list the settings, CACHES included.
    pages = run_demo(tmp_path)
    for shown in (pages["debug_settings"], pages["redacted"]):
        assert "127.0.0.1:1" in shown  # the location is there, its secrets are not
        for secret in ("p@ss", "ss w", "w/rd", "x#y", "q-s3cret", "admin:"):
            assert secret not in shown, (secret, shown)
