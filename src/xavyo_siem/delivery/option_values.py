"""Reading a destination's raw options into typed values: the value parsers, the reader that
falls back to a config field's default, and the batch options every delivery type accepts.

Option values may arrive typed (JSON from the API) or as strings (`--option KEY=VALUE` on
the command line): integers accept `int` or a decimal string, numbers of seconds accept
`int`, `float` or a decimal string, booleans accept `bool` or `true`/`false`/`yes`/`no`/
`on`/`off`/`1`/`0`. An option given as None counts as absent.

Each parser takes the option's name (for the error) and its raw value, and returns the typed
value or raises `InvalidDestination("options.<name>", rule)`. A config's default lives in one
place, its dataclass field: `OptionReader` reads it from there for an absent option.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeAlias, TypedDict, TypeVar

from xavyo_siem.errors import InvalidDestination

__all__ = [
    "BATCH_OPTIONS",
    "POLICY_OPTIONS",
    "BatchFields",
    "DeliveryPolicy",
    "OptionReader",
    "Parser",
    "choice",
    "integer",
    "option_field",
    "parse_bool",
    "parse_path",
    "parse_start",
    "seconds",
    "show",
    "text",
]

_T = TypeVar("_T")
_S = TypeVar("_S", bound=str)

Parser: TypeAlias = Callable[[str, object], _T]
"""A value parser: (option name, raw value) -> typed value, or InvalidDestination."""

BATCH_OPTIONS: Final = ("batch_max_events", "batch_max_bytes", "start")
POLICY_OPTIONS: Final = ("max_attempts", "max_age_s", "breaker_threshold", "breaker_cooldown_s")
_TRUE: Final = frozenset(("true", "yes", "on", "1"))
_FALSE: Final = frozenset(("false", "no", "off", "0"))


def option_field(name: str) -> str:
    """The field an error about option `name` names: `options.<name>`."""
    return f"options.{name}"


def show(value: object) -> str:
    """A raw value as quoted in an error message (repr, cut to 60 characters)."""
    return repr(value)[:60]


def integer(low: int, high: int) -> Parser[int]:
    """A parser of whole numbers from `low` to `high` (not booleans)."""

    def parse(name: str, value: object) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,12}\s*", value):
            number = int(value)
        if number is None or not low <= number <= high:
            raise InvalidDestination(
                option_field(name), f"must be an integer from {low} to {high}, got {show(value)}"
            )
        return number

    return parse


def seconds(low: float, high: float) -> Parser[float]:
    """A parser of a finite number of seconds from `low` to `high`."""

    def parse(name: str, value: object) -> float:
        number: float | None = None
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if numeric or (
            isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,9}(\.[0-9]{1,6})?\s*", value)
        ):
            number = float(value)  # type: ignore[arg-type]
        if number is None or not math.isfinite(number) or not low <= number <= high:
            raise InvalidDestination(
                option_field(name),
                f"must be a number of seconds from {low:g} to {high:g}, got {show(value)}",
            )
        return number

    return parse


def parse_bool(name: str, value: object) -> bool:
    """A boolean, or one of the words listed in the module docstring."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise InvalidDestination(option_field(name), f"must be true or false, got {show(value)}")


def choice(*choices: _S) -> Parser[_S]:
    """A parser that accepts exactly one of `choices`."""

    def parse(name: str, value: object) -> _S:
        for item in choices:
            if value == item:
                return item
        raise InvalidDestination(
            option_field(name), f"must be one of {', '.join(choices)}; got {show(value)}"
        )

    return parse


def text(max_len: int = 1024, *, allow_empty: bool = False) -> Parser[str]:
    """A parser of a string of at most `max_len` characters, without controls; non-empty
    unless `allow_empty` (for an option whose empty value means "leave it unset")."""
    least = 0 if allow_empty else 1

    def parse(name: str, value: object) -> str:
        if not isinstance(value, str):
            raise InvalidDestination(
                option_field(name), f"must be a string, got {type(value).__name__}"
            )
        if len(value) < least or len(value) > max_len:
            raise InvalidDestination(
                option_field(name), f"must be {least} to {max_len} characters long"
            )
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise InvalidDestination(option_field(name), "must not contain control characters")
        return value

    return parse


_path_text: Final = text(4096)


def parse_path(name: str, value: object) -> str:
    """An absolute file path (not opened here: validation does no I/O)."""
    path = _path_text(name, value)
    if not path.startswith("/"):
        raise InvalidDestination(option_field(name), f"must be an absolute path, got {show(value)}")
    return path


_start_text: Final = text(64)


def parse_start(name: str, value: object) -> str:
    """`now`, `beginning`, or an ISO 8601 time with a UTC offset (kept as given)."""
    start = _start_text(name, value).strip()
    if start in ("now", "beginning"):
        return start
    try:
        parsed = datetime.fromisoformat(start)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise InvalidDestination(
            option_field(name),
            f"must be now, beginning or an ISO 8601 time with a UTC offset, got {show(value)}",
        )
    return start


class BatchFields(TypedDict):
    """The options every delivery type accepts, as config fields (the pipeline reads them)."""

    batch_max_events: int
    batch_max_bytes: int
    start: str


_batch_events: Final = integer(1, 100_000)
_batch_bytes: Final = integer(1024, 64 << 20)


_DEFAULTS: dict[type[Any], dict[str, Any]] = {}


def _defaults(config_type: type[Any]) -> dict[str, Any]:
    """The defaults of a config dataclass's fields (those that have one), by name; read
    once per dataclass (a worker opens thousands of destinations)."""
    found = _DEFAULTS.get(config_type)
    if found is None:
        found = _DEFAULTS[config_type] = {
            spec.name: spec.default
            for spec in dataclasses.fields(config_type)
            if spec.default is not dataclasses.MISSING
        }
    return found


class OptionReader:
    """Reads typed options out of a destination's raw options for one config dataclass.

    An absent option reads as the default of the config field of the same name (or of
    `field`), so each default is written once, on the dataclass.
    """

    def __init__(self, options: Mapping[str, object], config_type: type[Any]) -> None:
        self._options = options
        self._defaults = _defaults(config_type)

    def __call__(self, name: str, parse: Parser[_T], *, field: str | None = None) -> _T:
        """Option `name` parsed, or the default of config field `field` (default: `name`)."""
        value = self._options.get(name)
        if value is None:
            default: _T = self._defaults[field or name]
            return default
        return parse(name, value)

    def optional(self, name: str, parse: Parser[_T]) -> _T | None:
        """Like calling the reader, for a field whose default may be None (unset)."""
        value = self._options.get(name)
        if value is None:
            default: _T | None = self._defaults[name]
            return default
        return parse(name, value)

    def batch(self) -> BatchFields:
        """`batch_max_events`, `batch_max_bytes` and `start`, with the config's defaults."""
        return BatchFields(
            batch_max_events=self("batch_max_events", _batch_events),
            batch_max_bytes=self("batch_max_bytes", _batch_bytes),
            start=self("start", parse_start),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryPolicy:
    """What the pipeline does with a batch that keeps failing, from the options every
    delivery type accepts (`POLICY_OPTIONS`).

    By default a batch is retried without end: nothing is lost, the backlog waits. With
    `max_attempts` or `max_age_s` (from its first failure), a batch that still fails goes
    to dead letters with the last reason, where it can be replayed, and delivery goes on.
    `breaker_threshold` is the consecutive failures that open the circuit (None: the
    worker's default), `breaker_cooldown_s` how long an open circuit waits before each probe
    (None: the exponential backoff).
    """

    max_attempts: int | None = None
    max_age_s: float | None = None
    breaker_threshold: int | None = None
    breaker_cooldown_s: float | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> DeliveryPolicy:
        """The policy the options set, or InvalidDestination naming the bad option."""
        read = OptionReader(options, cls)
        return cls(
            max_attempts=read.optional("max_attempts", _attempts),
            max_age_s=read.optional("max_age_s", _max_age),
            breaker_threshold=read.optional("breaker_threshold", _threshold),
            breaker_cooldown_s=read.optional("breaker_cooldown_s", _cooldown),
        )

    def gives_up(self, *, attempts: int, failing_for_s: float) -> bool:
        """Whether a batch that failed `attempts` times over `failing_for_s` goes to dead
        letters now."""
        return (self.max_attempts is not None and attempts >= self.max_attempts) or (
            self.max_age_s is not None and failing_for_s >= self.max_age_s
        )


_attempts: Final = integer(1, 1_000_000)
_max_age: Final = seconds(1, 30 * 86_400)
_threshold: Final = integer(1, 1000)
_cooldown: Final = seconds(0.1, 86_400)
