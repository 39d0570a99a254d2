"""One fake transport: commands answered from a script, files in a dict."""

from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from pbsvllm.errors import TransportError
from pbsvllm.transport.base import Transport

Result = Tuple[int, str, str]
Answer = Union[Result, BaseException]


class FakeTransport(Transport):
    """``run(argv)`` answers from ``answers`` -- ``(argv prefix, (rc, out, err) or an exception)``, each
    used once, the first whose prefix matches -- then from ``respond(argv)``; any other command fails the
    test. Files live in :attr:`files` (path -> text). Every argv is recorded in :attr:`argvs`."""

    def __init__(
        self,
        answers: Sequence[Tuple[Sequence[str], Answer]] = (),
        *,
        respond: Optional[Callable[[List[str]], Result]] = None,
        files: Optional[Mapping[str, str]] = None,
        host: str = "fake.example",
    ) -> None:
        super().__init__()
        self.answers: List[Tuple[Sequence[str], Answer]] = list(answers)
        self.respond = respond
        self.files: Dict[str, str] = dict(files or {})
        self.argvs: List[List[str]] = []
        self.host = host

    def run(self, argv: Sequence[str], timeout: float, input: Optional[str] = None,
            env: Optional[Dict[str, str]] = None) -> Result:
        self.calls += 1
        self.argvs.append(list(argv))
        for i, (prefix, answer) in enumerate(self.answers):
            if list(argv[: len(prefix)]) == list(prefix):
                del self.answers[i]
                if isinstance(answer, BaseException):
                    raise answer
                return answer
        if self.respond is not None:
            return self.respond(list(argv))
        raise AssertionError(f"unexpected command {argv}")

    def read_text(self, path: str) -> str:
        try:
            return self.files[path]
        except KeyError:
            raise TransportError(f"no such file on {self.host}: {path}") from None

    def write_text(self, path: str, text: str, mode: int = 0o600) -> None:
        self.files[path] = text

    def exists(self, path: str) -> bool:
        return path in self.files

    def size(self, path: str) -> Optional[int]:
        text = self.files.get(path)
        return None if text is None else len(text.encode())

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        if path not in self.files:
            raise TransportError(f"no such file on {self.host}: {path}")
        return self.files[path].encode()[offset : offset + length]
