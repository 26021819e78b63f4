"""What the tests share: peers to talk to, labs to build, clients, pinned clocks and the oracles they read with.

Test modules import from here (and get their fixtures from tests/conftest.py); no test module imports another.
"""
