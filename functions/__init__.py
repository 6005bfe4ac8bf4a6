"""Thin Azure Functions triggers, one blueprint per concern: parse, call shared/, answer."""
