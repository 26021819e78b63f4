"""Pure tier: the core and other logic with no sockets, no subprocesses, no lab (tests/conftest.py refuses them).

`./dev test --fast` runs this tier alone, in seconds.
"""
