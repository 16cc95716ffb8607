"""The SCIM endpoints under /v1/scim/{idp}, by concern.

entry.py: the ASGI entry (routing, error mapping, timing, the access log, metrics, provisioning
records); auth.py: bearer authentication; handlers.py: the handlers; params.py: query parameters;
preconditions.py: If-Match; render.py: resources as JSON; request.py, responses.py, error_responses.py:
the request as handlers read it and what goes back.
"""
