"""The container model of the `corral` CLI and of corral.Client's high-level API: names and
ids (names.py), the labels the records carry (labels.py), the image's config (image.py), the
OCI spec made from image config and options (spec.py), stdio for attached processes
(stdio.py), and the collections and objects of the client (api.py)."""
