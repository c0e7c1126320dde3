"""keyedcache's test suite (pytest + pytest-django; see tests/conftest.py for the fixtures)."""
