"""Paths the tests share: the repository root and the recorded data."""

import os

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
DATA = os.path.join(TESTS, "data")
EXAMPLES = os.path.join(ROOT, "examples")
