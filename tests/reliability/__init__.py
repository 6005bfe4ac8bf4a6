"""Reliability and security: hostile input, fuzzing against the OpenAPI document, and outages of backing services."""
