"""The content store: content-addressed blobs and resumable ingests."""
