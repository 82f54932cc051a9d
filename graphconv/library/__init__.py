"""The spec library: the specs graphconv ships (graphconv.nn compiles them; `uses:` can name them)."""
