"""Argument types of the ``workers`` command: strict numbers, names and module paths.

Each refuses a bad value with a usage error (exit code 2) that names the option, shows the
value (capped, escaped) and says what is accepted. Numbers are ASCII digits and finite: click's
own types take ``nan``, ``inf``, ``1_000`` and other scripts' digits.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import click

from workers.config.fields import topic_name
from workers.config.masking import shown
from workers.exceptions import ConfigError

if TYPE_CHECKING:
    _Type = click.ParamType[Any]
else:
    _Type = click.ParamType

_INT = re.compile(r"[+-]?[0-9]{1,30}")
_FLOAT = re.compile(r"[+-]?(?:[0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})(?:[eE][+-]?[0-9]{1,3})?")

# Kafka's protocol fields: partition ids and counts are int32, replication factors int16.
INT32_MAX = 2**31 - 1
INT16_MAX = 2**15 - 1


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class Number(_Type):
    """An integer (``kind=int``) or a finite number between ``low`` and ``high``."""

    def __init__(self, kind: type[int] | type[float], low: float, high: float) -> None:
        self.kind, self.low, self.high = kind, low, high
        self.name = "integer" if kind is int else "number"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "INTEGER" if self.kind is int else "SECONDS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        what = "an integer" if self.kind is int else "a number"
        expected = f"{what} between {_bound(self.low)} and {_bound(self.high)}"
        if isinstance(value, int | float) and not isinstance(value, bool):
            number: float | None = value  # a default
        else:
            text = str(value).strip(" ")
            pattern = _INT if self.kind is int else _FLOAT
            number = self.kind(text) if pattern.fullmatch(text) else None
        if number is None or not math.isfinite(number) or not self.low <= number <= self.high:
            self.fail(f"{shown(value)} is not {expected}", param, ctx)
        return number


class TopicName(_Type):
    """A Kafka topic name, checked as the configuration checks one."""

    name = "topic"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return topic_name("TOPIC", str(value))
        except ConfigError as exc:
            self.fail(f"{shown(value)} is not {exc.expected}", param, ctx)


def _dotted(text: str) -> bool:
    return 0 < len(text) <= 200 and all(part.isidentifier() for part in text.split("."))


class ModuleName(_Type):
    """A dotted Python module name such as ``celeryconfig`` or ``proj.settings``."""

    name = "module"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not _dotted(str(value)):
            expected = "a Python module name such as celeryconfig or proj.settings"
            self.fail(f"{shown(value)} is not {expected}", param, ctx)
        return str(value)


class AppPath(_Type):
    """``module`` or ``module:attribute``, as ``celery -A`` takes it."""

    name = "module:attribute"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        module, colon, attr = str(value).partition(":")
        if not _dotted(module) or (colon and not attr.isidentifier()):
            expected = "module:attribute such as workers.app:app or proj.celery:app"
            self.fail(f"{shown(value)} is not {expected}", param, ctx)
        return str(value)


# Kafka offsets are signed 64-bit.
OFFSET_MAX = 2**63 - 1
_DIGITS = re.compile(r"[0-9]+")
_NEGATIVE = re.compile(r"-[0-9]+")


class ResetTarget(_Type):
    """``earliest``, ``latest``, an offset (digits, up to 2^63-1) or a time: ISO 8601, a
    relative form (``-1h``) or ``@`` + epoch seconds/milliseconds. Checked before anything
    connects; returned as written (an offset without leading zeros)."""

    name = "target"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from workers.config.timeparse import parse_time

        text = str(value).strip(" ")
        if text in ("earliest", "latest"):
            return text
        if _DIGITS.fullmatch(text):
            digits = text.lstrip("0") or "0"
            if len(digits) > 19 or int(digits) > OFFSET_MAX:
                self.fail(
                    f"{shown(value)} is beyond the largest Kafka offset, {OFFSET_MAX} "
                    "(offsets are signed 64-bit)",
                    param,
                    ctx,
                )
            return digits
        if _NEGATIVE.fullmatch(text):
            self.fail(
                f"{shown(value)} is a negative offset: offsets start at 0 (for a time before "
                "now, give a unit: -5m, -2h, -1d)",
                param,
                ctx,
            )
        try:
            parse_time(text[1:] if text.startswith("@") else text)
        except ValueError as exc:
            self.fail(f"{exc}; or earliest, latest, an offset", param, ctx)
        return text


class DateTime(_Type):
    """``--to-datetime``: ``YYYY-MM-DDTHH:mm[:SS[.sss]]`` with an optional zone (none: UTC), as
    kafka-consumer-groups takes it. Checked before anything connects; returned as written."""

    name = "datetime"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from workers.ops.timespec import parse_datetime

        try:
            parse_datetime(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return str(value).strip(" ")


class Duration(_Type):
    """``--by-duration``: ISO 8601 (``PT1H``, ``P1DT2H30M``) or the short form (``1h``,
    ``-30m``), a length of time back from now. Checked before anything connects; returned as
    written."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from workers.ops.timespec import parse_duration

        try:
            parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return str(value).strip(" ")
