"""Errors that name the input at fault."""

from __future__ import annotations


class DataError(ValueError):
    """A data file or record is not what the pipeline expects.

    The message always names the file and, where there is one, the record.
    """

    def __init__(self, path: object, problem: str, record: object | None = None) -> None:
        where = f"{path}" if record is None else f"{path} [record {record}]"
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.record = record
        self.problem = problem


class ParameterError(ValueError):
    """A parameter is outside the values the code can honour; the message names it."""

    def __init__(self, name: str, value: object, expected: str) -> None:
        super().__init__(f"parameter {name}={value!r}: expected {expected}")
        self.name = name
        self.value = value
