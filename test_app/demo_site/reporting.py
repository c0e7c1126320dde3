"""Debug pages of the demo: Django's safe filter, plus cache locations masked."""

from __future__ import annotations

from typing import Any

from django.views.debug import SafeExceptionReporterFilter


class MaskingFilter(SafeExceptionReporterFilter):
    """Hides what Django's filter hides, and the passwords inside CACHES locations.

    Django masks settings whose *names* look secret (PASSWORD, KEY, TOKEN, ...);
    a Redis URL with a password sits under CACHES -> LOCATION, a name that does not.
    """

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        """Django's cleansing, then every LOCATION and OPTIONS masked by keyedcache."""
        from keyedcache.dashboard.secrets import mask_location, mask_options

        if key == "CACHES" and isinstance(value, dict):
            masked: dict[str, Any] = {}
            for alias, config in value.items():
                if not isinstance(config, dict):
                    masked[alias] = self.cleansed_substitute
                    continue
                copy = dict(config)
                if "LOCATION" in copy:
                    copy["LOCATION"] = mask_location(copy["LOCATION"])
                if "OPTIONS" in copy:
                    copy["OPTIONS"] = dict(mask_options(copy["OPTIONS"]))
                masked[alias] = copy
            return masked
        return super().cleanse_setting(key, value)
