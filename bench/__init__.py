"""`make bench`: speed and memory numbers for eip-guard (see bench/README.md)."""
