"""Certificates: a CA and serving certificates made with cryptography."""
