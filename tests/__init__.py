"""The test suite, in tiers by directory: core (pure), adapters (real peers), lab (the simulator), e2e."""

import pytest

# The helpers' own asserts (a login's first prompt, a raw client's reads) explain their failures like a test's.
pytest.register_assert_rewrite("tests.support")
