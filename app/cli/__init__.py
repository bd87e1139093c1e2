"""The eip-guard command line."""
