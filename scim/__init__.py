"""The SCIM protocol as pure functions over dicts: no I/O, no web framework."""
