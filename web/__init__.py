"""The HTTP layer: Starlette routes for SCIM, auth, content types, ETags."""
