"""`make stress`: the hardening classes driven at full size, well past each limit, printing figures.

`make test` drives the same classes at sizes where they already show, in seconds; these runs take
minutes and print the figures docs/security.md quotes. They use the live-server fixtures of the tests.
"""

from tests.hardening.conftest import server_factory  # noqa: F401 - a fixture for the stress runs
