"""Images: references, media types, manifests and platforms, pull/push, unpack, import/export."""
