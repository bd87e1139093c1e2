"""Tests of the Helm chart, rendered by Helm's own engine."""
