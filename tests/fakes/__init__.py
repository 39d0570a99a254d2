"""The test suite's stand-ins, one of each (real components are in tests/plugins/):

- :mod:`tests.fakes.vllm` -- one fake vLLM: :class:`~tests.fakes.vllm.FakeVllm` (an in-process HTTP server
  with vLLM's routes) and, run as a program, a ``vllm serve`` stand-in for job scripts.
- :mod:`tests.fakes.scheduler` -- one fake scheduler: :class:`~tests.fakes.scheduler.FakeScheduler`.
- :mod:`tests.fakes.transport` -- one fake transport: :class:`~tests.fakes.transport.FakeTransport`.
"""

from tests.fakes.scheduler import FakeScheduler
from tests.fakes.transport import FakeTransport
from tests.fakes.vllm import FakeVllm, free_port

__all__ = ["FakeScheduler", "FakeTransport", "FakeVllm", "free_port"]
