"""A django-debug-toolbar panel of the request's keyed cache calls (add the app and the panel)."""
