"""The staff dashboard at /cache/: one module per job (access, formatting, secrets, chart, pages).

Every page reads the default KeyedCache (`iter_keys`, `require`, and
`peek_many`/`seconds_left`, which are not counted as cache traffic) and the
cluster-wide figures of `keyedcache.cluster.stats()`; no GET changes a
keyedcache entry. Deletes are POSTs with CSRF protection that need the
`keyedcache.delete_cache_keys` permission, are logged on the "keyedcache"
logger with the user's name, and end in a redirect with a message. A backend
that does not answer is shown as an error (status 503), never as an empty cache
or a delete done.
The pages are `overview.stats_page`, `keypages.view_page`,
`keypages.detail_page` and `deletes.delete_page` (re-exported by
`keyedcache.views`). See docs/dashboard.md.
"""
