"""Prometheus export of keyedcache's cluster-wide counters: add this app to INSTALLED_APPS."""
