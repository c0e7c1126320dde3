"""The demo app: a cached Product model, a slow memoized report, and pages that show both."""
