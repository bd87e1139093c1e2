"""Reading admin-supplied files: snapshots, manifests, policies."""
