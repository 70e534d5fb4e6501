"""The refusal of a whole file, shared by the CSV and workbook readers and the mapping."""

from __future__ import annotations


class FileProblem(Exception):
    """The file as a whole cannot be used; `message` says why in words, naming the line."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line
