"""Input checks shared by the services: collect every problem, then raise one
`Invalid` whose `fields` name each (the 422 body's "fields")."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from taskforce.errors import Invalid

_MAX_ID = 2**31 - 1  # ids are 32-bit integers: a larger number names no row


def as_id(value: Any) -> int | None:
    """A row id from an int or a string of digits; None if it cannot name a row."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 1 <= value <= _MAX_ID:
        return value
    return None


class FieldErrors:
    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}

    def add(self, name: str, message: str) -> None:
        self.fields.setdefault(name, []).append(message)

    def raise_if_any(self) -> None:
        if self.fields:
            raise Invalid("Some fields are invalid: " + ", ".join(sorted(self.fields)),
                          fields=dict(self.fields))

    def text(self, name: str, value: Any, *, max_len: int, required: bool = True) -> str:
        if value is None:
            value = ""
        if not isinstance(value, str):
            self.add(name, "Must be text.")
            return ""
        value = value.strip()
        if required and not value:
            self.add(name, "Required.")
        elif len(value) > max_len:
            self.add(name, f"At most {max_len} characters.")
        return value

    def choice(self, name: str, value: Any, choices: Iterable[str], *,
               required: bool = True) -> str | None:
        choices = tuple(choices)
        if value in (None, ""):
            if required:
                self.add(name, "Required.")
            return None
        if value not in choices:
            self.add(name, "Must be one of: " + ", ".join(choices) + ".")
            return None
        return value

    def choices(self, name: str, values: Any, choices: Iterable[str]) -> list[str]:
        choices = tuple(choices)
        if isinstance(values, str):
            values = [values]
        if not values or not isinstance(values, (list, tuple, set, frozenset)):
            self.add(name, "Choose at least one.")
            return []
        bad = [v for v in values if v not in choices]
        if bad:
            self.add(name, "Must be among: " + ", ".join(choices) + ".")
            return []
        return sorted(set(values))

    def date(self, name: str, value: Any) -> date | None:
        if value in (None, ""):
            return None
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                parsed = date.fromisoformat(value.strip())
            except ValueError:
                self.add(name, "Must be a date (YYYY-MM-DD).")
                return None
            return parsed
        self.add(name, "Must be a date (YYYY-MM-DD).")
        return None

    def integer(self, name: str, value: Any, *, required: bool = True) -> int | None:
        if value in (None, ""):
            if required:
                self.add(name, "Required.")
            return None
        row_id = as_id(value)
        if row_id is None:
            self.add(name, "Must be a whole number, 1 or more.")
        return row_id
