"""Layer tars: safe apply into a root, and tar creation for diffs."""
