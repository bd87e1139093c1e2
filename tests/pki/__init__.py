"""Tests of self-managed certificates: rotation decisions, hot TLS reload, the Secret."""
