"""Types of the compiled batched UDP listener (resolver/_dgram.c)."""

from collections.abc import Callable
from typing import Any

BATCH: int
SLOT: int

class Listener:
    def __init__(
        self,
        fd: int,
        process: Callable[[bytes, str, str], object],
        later: Callable[[Any, bytes], object],
    ) -> None: ...
    def serve(self) -> int: ...
    def send(self, data: bytes, address: bytes, /) -> bool: ...
    def counts(self) -> tuple[int, int]: ...
