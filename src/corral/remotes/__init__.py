"""Registry client (OCI distribution spec)."""
