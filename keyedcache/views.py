"""The dashboard's page views under their 1.5 home, `keyedcache.views` (they live in dashboard/)."""

from __future__ import annotations

from keyedcache.dashboard.deletes import delete_page
from keyedcache.dashboard.keypages import detail_page, view_page
from keyedcache.dashboard.overview import stats_page

__all__ = ["delete_page", "detail_page", "stats_page", "view_page"]
