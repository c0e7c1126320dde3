"""Optional Django apps built on keyedcache (add the ones you want to INSTALLED_APPS)."""
