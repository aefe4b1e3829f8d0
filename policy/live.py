"""`Live[T]`: one mutable slot holding an immutable snapshot. Swap whole, never mutate."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Live(Generic[T]):
    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value
