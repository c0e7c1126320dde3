"""manage.py demo_setup: prepare the database, cache table, demo login and products."""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

import keyedcache
from demo.models import Product
from demo_site.cache_config import describe_cache
from keyedcache.contrib.keyval import KeyVal

DEMO_USERNAME = "demo"
DEFAULT_URL = "http://127.0.0.1:8000/"
DATABASE_CACHE = "django.core.cache.backends.db.DatabaseCache"

#: The demo store shown in the admin (Key-value stores): text, JSON-like and read-only values.
DEMO_STORE = "demo.settings"
DEMO_SETTINGS: dict[str, Any] = {
    "site_name": "keyedcache demo shop",
    "banner_enabled": True,
    "items_per_page": 12,
    "featured": ["espresso-cup", "french-press"],
    "shipping": {"countries": ["DE", "FR", "NL"], "express": False},
    "free_shipping_over": Decimal("50.00"),  # not JSON: read-only in the admin
}

DEMO_PRODUCTS = [
    ("Espresso cup", "espresso-cup", Decimal("7.50")),
    ("French press", "french-press", Decimal("34.00")),
    ("Coffee grinder", "coffee-grinder", Decimal("89.90")),
    ("Milk jug", "milk-jug", Decimal("12.25")),
]


class Command(BaseCommand):
    """Migrate, create the cache table if needed, (re)set the demo login, add products."""

    help = (
        "Prepare the keyedcache demo: migrate, createcachetable for a database cache, "
        "create the staff superuser 'demo' with a new random password, add demo products "
        "and the demo key-value store, and print the URL and the login."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """--url: where the demo will be served (only printed)."""
        parser.add_argument("--url", default=DEFAULT_URL, help=f"demo URL to print ({DEFAULT_URL})")

    def handle(self, *args: Any, **options: Any) -> None:
        """Run every setup step, then print the URL and the login."""
        url = options["url"].rstrip("/") + "/"
        self.stdout.write("Applying migrations ...")
        call_command("migrate", interactive=False, verbosity=0)
        if any(c.get("BACKEND") == DATABASE_CACHE for c in settings.CACHES.values()):
            self.stdout.write("Creating the cache table ...")
            call_command("createcachetable", verbosity=0)
        password = self.demo_user()
        created = self.demo_products()
        self.stdout.write(f"Demo products: {Product.objects.count()} ({created} new)")
        added = self.demo_store()
        self.stdout.write(f"Demo key-value store {DEMO_STORE!r}: {added} new key(s)")
        self.check_cache()
        alias = getattr(settings, "KEYEDCACHE_ALIAS", "default")
        self.stdout.write(
            self.style.SUCCESS("\nkeyedcache demo is ready\n")
            + f"  URL:        {url}\n"
            + f"  Dashboard:  {url}cache/\n"
            + f"  Admin:      {url}admin/\n"
            + f"  Login:      {DEMO_USERNAME} / {password}\n"
            + f"  Cache:      {describe_cache(settings.CACHES[alias])}\n"
        )

    def demo_user(self) -> str:
        """Create the staff superuser `demo`, or give it a new password; return the password."""
        user_model = get_user_model()
        user, _ = user_model._default_manager.get_or_create(
            **{user_model.USERNAME_FIELD: DEMO_USERNAME}
        )
        password = secrets.token_urlsafe(12)
        user.is_staff = True
        user.is_superuser = True
        user.is_active = True
        user.set_password(password)
        user.save()
        return password

    def demo_products(self) -> int:
        """Add the demo products that are missing; return how many were created."""
        created = 0
        for name, slug, price in DEMO_PRODUCTS:
            _, new = Product.objects.get_or_create(
                slug=slug, defaults={"name": name, "price": price}
            )
            created += new
        return created

    def demo_store(self) -> int:
        """Add the demo store's missing keys (edits made in the admin are kept)."""
        store = KeyVal(DEMO_STORE)
        missing = {key: value for key, value in DEMO_SETTINGS.items() if key not in store}
        return sum(store.set(key, value) for key, value in missing.items())

    def check_cache(self) -> None:
        """Warn (without failing) when the cache does not answer: the demo still runs uncached."""
        try:
            keyedcache.cache_require()
        except keyedcache.CacheNotRespondingError as exc:
            self.stderr.write(
                self.style.WARNING(f"Warning: {exc}\nThe demo will run, but nothing gets cached.")
            )
