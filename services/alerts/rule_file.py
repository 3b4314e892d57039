"""Users' own alert rules: a TOML file of [[rule]] tables, checked once at start into UserRules.

The file (docs/alert-rules.example.toml is a commented one)::

    [[rule]]
    name = "hot-gpu"          # required: a-z, 0-9, '_' and '-', at most 64, unique in the file
    metric = "temp_c"         # required: a metric of the history (common.metrics), in its unit
    op = ">"                  # required: >, >=, < or <=
    threshold = 85            # required: a number, in the metric's unit
    for = "5m"                # how long the condition must hold before the alert fires: seconds,
                              # or "30s", "5m", "2h", "1d", "1h30m" (default 0, at most 30 days)
    clear = 80                # once firing, it resolves only when the value is back past clear
                              # (default: as soon as the condition is false)
    severity = "critical"     # critical, warning (the default) or info
    hosts = ["gpu-node-*"]    # host name patterns (fnmatch, any case); none: every host
    gpus = ["0", "GPU-1234*"] # GPU indexes, UUIDs or UUID patterns; none: every GPU
    message = "{host} GPU {gpu_index} is at {value} °C"

- Only [[rule]] tables at the top level. A name may not be a built-in alert's (BUILT_IN_NAMES).
- `clear` sits on the resolving side of `threshold`: at or below it for > and >=, at or above it
  for < and <=.
- A message fills {host}, {gpu_index}, {gpu_uuid}, {gpu_name}, {value}, {threshold}, {metric},
  {op}, {rule}, {for} and {severity} from the fields its caller gives; anything else in braces
  (another name, `{value.real}`, `{host[0]}`, `{value:.1f}`) is left as written, never evaluated.
- A file that cannot be used raises RuleFileError, one line: "<file>, line <n>: <problem>", the
  topmost problem of the file. tomllib gives no positions for values, so the file's statements
  are scanned here (strings, arrays and comments skipped) to find the line of a rule's header and
  of each of its keys.
- An empty file, or one with only comments, holds no rules.
"""

from __future__ import annotations

import bisect
import codecs
import difflib
import math
import operator
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import NamedTuple, TypeVar

from common.config import ALERT_SEVERITIES, BUILT_IN_ALERTS
from common.metrics import METRIC_NAMES, METRICS

SEVERITIES = ALERT_SEVERITIES
OPERATORS = (">", ">=", "<", "<=")
BUILT_IN_NAMES = BUILT_IN_ALERTS
PLACEHOLDERS = (
    "host",
    "gpu_index",
    "gpu_uuid",
    "gpu_name",
    "value",
    "threshold",
    "metric",
    "op",
    "rule",
    "for",
    "severity",
)
REQUIRED_KEYS = ("name", "metric", "op", "threshold")
ALLOWED_KEYS = (*REQUIRED_KEYS, "for", "clear", "severity", "hosts", "gpus", "message")
MAX_FOR_S = 30 * 86400.0
MAX_FILE_BYTES = 1 << 20  # a rule file is a few KiB; a bigger one is the wrong file mounted

DEFAULT_MESSAGE = (
    "{metric} {op} {threshold} for {for} on {host} GPU {gpu_index} ({gpu_name}): now {value}"
)
DEFAULT_MESSAGE_AT_ONCE = (
    "{metric} {op} {threshold} on {host} GPU {gpu_index} ({gpu_name}): now {value}"
)

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[dhms])+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_AT_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_AT_END = re.compile(r"\s*\(at end of document\)$")
_SHOWN_MAX = 60

_T = TypeVar("_T")


@dataclass(frozen=True)
class UserRule:
    """One rule of the user's file: a threshold on one metric of the matching GPUs.

    threshold and clear are in the metric's unit; for_s in seconds. The rule is checked by
    load_rule_file/parse_rules; built directly, it is taken as given.
    """

    name: str
    metric: str
    op: str
    threshold: float
    for_s: float = 0.0
    clear: float | None = None
    severity: str = "warning"
    hosts: tuple[str, ...] = ()
    gpus: tuple[str, ...] = ()
    message: str = ""

    def matches(self, host: str, gpu_index: int, gpu_uuid: str) -> bool:
        """Return whether the rule watches this GPU (index and UUID) of this host."""
        host_ok = not self.hosts or any(_like(host, pattern) for pattern in self.hosts)
        gpu_ok = not self.gpus or any(
            int(entry) == gpu_index if _is_index(entry) else _like(gpu_uuid, entry)
            for entry in self.gpus
        )
        return host_ok and gpu_ok

    def condition(self, value: float) -> bool:
        """Return whether value (in the metric's unit) meets `value op threshold`; NaN never."""
        return _COMPARE[self.op](value, self.threshold)

    def cleared(self, value: float) -> bool:
        """Return whether value resolves a firing alert: back past clear where set, else the
        condition false. An unknown value (NaN) resolves nothing."""
        if math.isnan(value):
            return False
        if self.clear is None:
            return not self.condition(value)
        return value < self.clear if self.op in (">", ">=") else value > self.clear

    def render(self, **fields: object) -> str:
        """Return the message with each {name} of PLACEHOLDERS filled from fields.

        A placeholder not given, an unknown name, and anything else in braces (attribute or index
        access, a format spec) are left as written. Numbers are shown compactly (87, 87.5); a
        number given for {for} is shown as a duration (5m).
        """
        template = self.message or (DEFAULT_MESSAGE if self.for_s else DEFAULT_MESSAGE_AT_ONCE)

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in PLACEHOLDERS or name not in fields:
                return match.group(0)
            return _field_text(name, fields[name])

        return _PLACEHOLDER.sub(fill, template)


class RuleFileError(ValueError):
    """The rule file cannot be used; str() is one line: '<path>, line <n>: <problem>'."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        where = source if line is None else f"{source}, line {line}"
        message = f"{where}: {problem}"
        super().__init__(message.replace("\r", "\\r").replace("\n", "\\n"))
        self.source = source
        self.line = line
        self.problem = problem


def load_rule_file(path: Path) -> tuple[UserRule, ...]:
    """Return the rules of the file at path; raise RuleFileError if it cannot be used."""
    source = str(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise RuleFileError(source, None, f"cannot read the file: {_os_reason(exc)}") from exc
    if len(data) > MAX_FILE_BYTES:
        raise RuleFileError(source, None, f"larger than {MAX_FILE_BYTES} bytes: not a rule file")
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start : exc.start + 1].hex()
        raise RuleFileError(source, line, f"not UTF-8 text (byte 0x{bad})") from exc
    return parse_rules(text, source)


def parse_rules(text: str, source: str) -> tuple[UserRule, ...]:
    """Return the rules of a rule file's text; raise RuleFileError naming source as the file."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(str(exc), text, source) from None
    except RecursionError:
        raise RuleFileError(source, None, "invalid TOML: nested too deeply") from None
    except ValueError as exc:  # an integer past Python's digit limit, among others
        raise RuleFileError(source, None, f"invalid TOML: {exc}") from None
    layout = _Layout.scan(text)
    problems: list[RuleFileError] = []

    for key in document:
        if key != "rule":
            problem = (
                f"unknown top-level key {_shown(key)}{_did_you_mean(key, ('rule',))}: "
                "the file holds only [[rule]] tables"
            )
            problems.append(RuleFileError(source, layout.top_line(key), problem))
    tables = document.get("rule", [])
    if isinstance(tables, dict):
        problem = "write each rule as [[rule]] (an array of tables), not [rule]"
        problems.append(RuleFileError(source, layout.top_line("rule"), problem))
        tables = []
    elif not isinstance(tables, list) or len(tables) != len(layout.rule_lines):
        problem = f"'rule' must be [[rule]] tables, not {_toml_type(tables)}"
        problems.append(RuleFileError(source, layout.top_line("rule"), problem))
        tables = []

    rules: list[UserRule] = []
    name_lines: dict[str, int] = {}
    for index, table in enumerate(tables):
        try:
            rule = _parse_rule(table, index, layout, source)
        except RuleFileError as exc:
            problems.append(exc)
            continue
        line = layout.key_line(index, "name")
        if rule.name in name_lines:
            problem = (
                f"duplicate rule name {_shown(rule.name)} (first on line {name_lines[rule.name]})"
            )
            problems.append(RuleFileError(source, line, problem))
        name_lines.setdefault(rule.name, line)
        rules.append(rule)

    if problems:
        raise min(problems, key=lambda problem: problem.line or 0)
    return tuple(rules)


def parse_duration(value: object) -> float:
    """Return the seconds of a duration: a number of seconds, or "30s", "5m", "2h", "1d" and
    their sums, largest unit first ("1h30m"); raise ValueError if it is not one, or negative."""
    if isinstance(value, str):
        text = value.strip()
        if not _DURATION.fullmatch(text):
            raise ValueError(
                f'{_shown(value)} is not a duration: write "30s", "5m", "2h", "1d", "1h30m" '
                "or a number of seconds"
            )
        parts = _DURATION_PART.findall(text)
        ranks = ["dhms".index(unit) for _, unit in parts]
        if ranks != sorted(set(ranks)):
            raise ValueError(f"{_shown(value)}: give each unit once, largest first, as in 1h30m")
        # rounded to the millisecond so that "0.1m" is 6 s, not 6.000000000000001 s
        return round(sum(float(number) * _UNIT_S[unit] for number, unit in parts), 3)
    seconds = _finite(value)
    if seconds is None:
        raise ValueError(
            f'must be a duration such as "5m" or a number of seconds, not {_toml_type(value)}'
        )
    if seconds < 0:
        raise ValueError(f"{_shown(value)} seconds is negative")
    return seconds


def format_duration(seconds: float) -> str:
    """Return seconds as the file writes them: 45s, 5m, 1h30m, 1d; a fraction as 2.5s."""
    whole = round(seconds)
    if not math.isfinite(seconds) or abs(seconds - whole) > 1e-9 or whole < 0:
        return f"{_compact(seconds)}s"
    if whole == 0:
        return "0s"
    text = ""
    for unit, size in _UNIT_S.items():
        count, whole = divmod(whole, size)
        if count:
            text += f"{count}{unit}"
    return text


class _BadValueError(ValueError):
    """A value of a rule's key is not allowed; the message says why, without file or line."""


def _parse_rule(table: dict[str, object], index: int, layout: _Layout, source: str) -> UserRule:
    """Return the rule of the index-th [[rule]] table, or raise the first problem of it."""
    name = table.get("name")
    label = f"rule {_shown(name)}" if isinstance(name, str) and name else f"rule #{index + 1}"

    for key in table:
        if key not in ALLOWED_KEYS:
            problem = (
                f"{label}: unknown key {_shown(key)}{_did_you_mean(key, ALLOWED_KEYS)}; "
                f"allowed keys: {', '.join(ALLOWED_KEYS)}"
            )
            raise RuleFileError(source, layout.key_line(index, key), problem)
    for key in REQUIRED_KEYS:
        if key not in table:
            problem = f"{label}: missing required key {key!r}"
            raise RuleFileError(source, layout.rule_lines[index], problem)

    def value(key: str, check: Callable[[object], _T], default: _T) -> _T:
        if key not in table:
            return default
        try:
            return check(table[key])
        except _BadValueError as exc:
            problem = f"{label}: {key} {exc}"
            raise RuleFileError(source, layout.key_line(index, key), problem) from None

    rule = UserRule(
        name=value("name", _check_name, ""),
        metric=value("metric", _check_metric, ""),
        op=value("op", _choice(OPERATORS), ""),
        threshold=value("threshold", _check_number, 0.0),
        for_s=value("for", _check_for, 0.0),
        clear=value("clear", _check_number, None),
        severity=value("severity", _choice(SEVERITIES), "warning"),
        hosts=value("hosts", _check_hosts, ()),
        gpus=value("gpus", _check_gpus, ()),
        message=value("message", _check_text, ""),
    )
    if rule.clear is not None:
        above = rule.op in (">", ">=")
        if (rule.clear > rule.threshold) if above else (rule.clear < rule.threshold):
            side, back = ("at or below", "falls below") if above else ("at or above", "rises above")
            problem = (
                f"{label}: clear = {_compact(rule.clear)} must be {side} threshold = "
                f"{_compact(rule.threshold)} for op {rule.op!r} (the alert resolves once the "
                f"value {back} clear)"
            )
            raise RuleFileError(source, layout.key_line(index, "clear"), problem)
    return rule


def _check_text(value: object) -> str:
    if not isinstance(value, str):
        raise _BadValueError(f"must be a string, not {_toml_type(value)}")
    return value


def _check_name(value: object) -> str:
    name = _check_text(value)
    if not _NAME.fullmatch(name):
        raise _BadValueError(
            f"{_shown(name)} must be 1 to 64 of a-z, 0-9, '_' and '-', starting with a-z or 0-9"
        )
    if name in BUILT_IN_NAMES:
        raise _BadValueError(f"{_shown(name)} is the name of a built-in alert; choose another")
    return name


def _check_metric(value: object) -> str:
    metric = _check_text(value)
    if metric in METRIC_NAMES:
        return metric
    same_field = [m.name for m in METRICS if m.smi_field == metric]
    hint = f" (did you mean {same_field[0]!r}?)" if same_field else ""
    hint = hint or _did_you_mean(metric, METRIC_NAMES)
    known = "" if hint else f"; one of {', '.join(METRIC_NAMES)}"
    raise _BadValueError(f"{_shown(metric)} is not a known metric{hint}{known}")


def _choice(allowed: tuple[str, ...]) -> Callable[[object], str]:
    def check(value: object) -> str:
        text = _check_text(value)
        if text not in allowed:
            hint = _did_you_mean(text, allowed)
            raise _BadValueError(
                f"{_shown(text)} is not allowed{hint}: one of {', '.join(allowed)}"
            )
        return text

    return check


def _check_number(value: object) -> float:
    number = _finite(value)
    if number is None:
        number_like = isinstance(value, int | float) and not isinstance(value, bool)
        kind = _shown(value) if number_like else _toml_type(value)
        raise _BadValueError(f"must be a finite number, not {kind}")
    return number


def _check_for(value: object) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise _BadValueError(str(exc)) from None
    if seconds > MAX_FOR_S:
        raise _BadValueError(f"{_shown(value)} is longer than 30 days")
    return seconds


def _strings(value: object, what: str) -> list[object]:
    if not isinstance(value, list):
        raise _BadValueError(f"must be an array of {what}, not {_toml_type(value)}")
    return value


def _check_hosts(value: object) -> tuple[str, ...]:
    patterns = _strings(value, 'host name patterns, e.g. ["gpu-node-*"]')
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise _BadValueError(f"entries must be non-empty strings, not {_shown(pattern)}")
    return tuple(str(pattern) for pattern in patterns)


MAX_GPU_INDEX = 1023  # as a reading's index (common.messages)


def _check_gpus(value: object) -> tuple[str, ...]:
    entries = _strings(value, 'GPU indexes or UUID patterns, e.g. ["0", "GPU-1234*"]')
    gpus = []
    for entry in entries:
        # an index written as a number is what users type: gpus = [0, 1]
        if isinstance(entry, int) and not isinstance(entry, bool) and 0 <= entry <= MAX_GPU_INDEX:
            gpus.append(str(entry))
        elif isinstance(entry, str) and _is_index(entry) and int(entry[:9]) > MAX_GPU_INDEX:
            raise _BadValueError(f"GPU index {_shown(entry)} is past {MAX_GPU_INDEX}")
        elif isinstance(entry, str) and entry:
            gpus.append(entry)
        else:
            raise _BadValueError(
                f'entries must be GPU indexes (0, "0") or UUID patterns, not {_shown(entry)}'
            )
    return tuple(gpus)


class _Statement(NamedTuple):
    """A key/value line or a table header of a TOML text: its line and dotted key."""

    line: int
    kind: str  # "key", "table" ([x]) or "array" ([[x]])
    path: tuple[str, ...]


@dataclass
class _Layout:
    """Where things are in a rule file: the lines of top-level keys, of the [[rule]] headers and
    of each rule's keys (the first line that defines each)."""

    top_lines: dict[str, int] = field(default_factory=dict)
    rule_lines: list[int] = field(default_factory=list)
    rule_key_lines: list[dict[str, int]] = field(default_factory=list)

    @classmethod
    def scan(cls, text: str) -> _Layout:
        """Return the layout of a text that tomllib has accepted."""
        layout = cls()
        in_root, in_rule = True, False
        for statement in _statements(text):
            if not statement.path:
                continue
            first = statement.path[0]
            if statement.kind == "key":
                if in_root:
                    layout.top_lines.setdefault(first, statement.line)
                elif in_rule:
                    layout.rule_key_lines[-1].setdefault(first, statement.line)
                continue
            layout.top_lines.setdefault(first, statement.line)
            in_root = False
            in_rule = statement.kind == "array" and statement.path == ("rule",)
            if in_rule:
                layout.rule_lines.append(statement.line)
                layout.rule_key_lines.append({})
            elif first == "rule" and len(statement.path) > 1 and layout.rule_key_lines:
                # [rule.hosts] or [[rule.x]] defines a key of the rule above it
                layout.rule_key_lines[-1].setdefault(statement.path[1], statement.line)
        return layout

    def top_line(self, key: str) -> int | None:
        """Return the line that defines a top-level key."""
        return self.top_lines.get(key)

    def key_line(self, index: int, key: str) -> int:
        """Return the line of a key of the index-th rule, else of the rule's header."""
        return self.rule_key_lines[index].get(key, self.rule_lines[index])


def _statements(text: str) -> list[_Statement]:
    """Return the statements of a valid TOML text in order, skipping values and comments."""
    newlines = [index for index, char in enumerate(text) if char == "\n"]
    statements = []
    pos, end = 0, len(text)
    while pos < end:
        char = text[pos]
        if char in " \t\r\n":
            pos += 1
            continue
        if char == "#":
            pos = _line_end(text, pos)
            continue
        line = bisect.bisect_left(newlines, pos) + 1
        if char == "[":
            kind = "array" if text.startswith("[[", pos) else "table"
            path, pos = _read_key(text, pos + (2 if kind == "array" else 1))
            statements.append(_Statement(line, kind, path))
            pos = _line_end(text, pos)  # past "]]" and a comment: nothing else may follow
            continue
        path, pos = _read_key(text, pos)
        if path and text.startswith("=", pos):
            statements.append(_Statement(line, "key", path))
            pos = _skip_value(text, pos + 1)
        else:  # not expected in a valid text: go on at the next line
            pos = _line_end(text, pos)
    return statements


def _read_key(text: str, pos: int) -> tuple[tuple[str, ...], int]:
    """Return a dotted key's parts (unquoted) and the position after it."""
    parts = []
    end = len(text)
    while True:
        pos = _skip_blanks(text, pos)
        if pos >= end:
            break
        char = text[pos]
        if char == '"':
            close = _basic_string_end(text, pos)
            parts.append(_decode_basic(text[pos:close]))
            pos = close
        elif char == "'":
            close = text.find("'", pos + 1)
            close = end if close < 0 else close
            parts.append(text[pos + 1 : close])
            pos = close + 1
        else:
            match = _BARE_KEY.match(text, pos)
            if not match:
                break
            parts.append(match.group())
            pos = match.end()
        pos = _skip_blanks(text, pos)
        if not text.startswith(".", pos):
            break
        pos += 1
    return tuple(parts), pos


def _skip_value(text: str, pos: int) -> int:
    """Return the position of the newline (or end) that ends the value starting at pos."""
    depth = 0
    end = len(text)
    while pos < end:
        char = text[pos]
        if text.startswith(('"""', "'''"), pos):
            pos = _multiline_end(text, pos)
        elif char == '"':
            pos = _basic_string_end(text, pos)
        elif char == "'":
            close = text.find("'", pos + 1)
            pos = end if close < 0 else close + 1
        elif char == "#":
            pos = _line_end(text, pos)
        elif char == "\n" and depth <= 0:
            return pos
        else:
            depth += (char in "[{") - (char in "]}")
            pos += 1
    return pos


def _multiline_end(text: str, pos: int) -> int:
    """Return the position after the multi-line string that opens at pos."""
    delimiter = text[pos : pos + 3]
    quote = delimiter[0]
    index, end = pos + 3, len(text)
    while index < end:
        if quote == '"' and text[index] == "\\":
            index += 2
        elif text.startswith(delimiter, index):
            close = index + 3
            while close < end and close - index < 5 and text[close] == quote:
                close += 1  # up to two quotes may end the string's content
            return close
        else:
            index += 1
    return end


def _basic_string_end(text: str, pos: int) -> int:
    """Return the position after the one-line basic string that opens at pos."""
    index, end = pos + 1, len(text)
    while index < end:
        char = text[index]
        if char == "\\":
            index += 2
        elif char == '"':
            return index + 1
        elif char == "\n":
            return index
        else:
            index += 1
    return end


def _decode_basic(quoted: str) -> str:
    """Return the content of a quoted basic string, its escapes read as TOML reads them."""
    try:
        return str(tomllib.loads(f"k = {quoted}")["k"])
    except tomllib.TOMLDecodeError:
        return quoted.strip('"')


def _skip_blanks(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def _line_end(text: str, pos: int) -> int:
    newline = text.find("\n", pos)
    return len(text) if newline < 0 else newline


def _syntax_error(message: str, text: str, source: str) -> RuleFileError:
    """Return tomllib's error as a RuleFileError on the line it names."""
    at = _AT_POSITION.search(message)
    if at:
        problem = f"invalid TOML: {message[: at.start()]} (column {at.group(2)})"
        return RuleFileError(source, int(at.group(1)), problem)
    at = _AT_END.search(message)
    if at:
        # the last line with content: where the editor shows the unclosed thing's end
        line = max(1, len(text.rstrip().split("\n")))
        problem = f"invalid TOML: {message[: at.start()]} at the end of the file"
        return RuleFileError(source, line, problem)
    return RuleFileError(source, None, f"invalid TOML: {message}")


def _like(text: str, pattern: str) -> bool:
    # host names and UUIDs' hex digits are the same in any case
    return fnmatchcase(text.lower(), pattern.lower())


def _is_index(entry: str) -> bool:
    return entry.isascii() and entry.isdigit()


def _finite(value: object) -> float | None:
    """Return value as a finite float if it is a TOML integer or float, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _compact(number: float) -> str:
    """Return a number as people write it: 87, 87.5, 350.12, 0.00123."""
    if isinstance(number, int):
        return str(number)
    if not math.isfinite(number):
        return str(number)
    if number != 0 and abs(number) < 1:
        text = f"{number:.3g}"
    else:
        text = f"{number:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _field_text(name: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if name == "for":
        return format_duration(value)
    return _compact(value)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_MAX else f"{text[: _SHOWN_MAX - 3]}..."


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return f"a string ({_shown(value)})"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
