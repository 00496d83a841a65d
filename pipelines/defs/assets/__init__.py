"""One module per lineage stage; each asset calls one marc_ops stage function."""
