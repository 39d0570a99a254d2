"""Test configuration.

Real components are started by fixtures in ``tests/plugins``; if one cannot
start, the tests that need it fail loudly (never skip).
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

pytest_plugins = [
    "tests.plugins.fakesched",
    "tests.plugins.slurm",
    "tests.plugins.sshd",
    "tests.plugins.vllm",
    "tests.plugins.ray",
    "tests.plugins.router",
    "tests.plugins.verifiers",
]
