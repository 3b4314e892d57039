"""Minify a page module with rjsmin without touching its template literals.

rjsmin removes comments and whitespace, but it does not know template literals inside a
template's `${...}`: it dropped the space in `` `${a ? `GPU ${i} ` : ''}(` `` and the page read
"GPU 2(NVIDIA". So every outermost template literal is taken out first (found by a scanner
that knows strings, comments, regular expressions and nested templates), replaced by an
identifier no module uses, and put back verbatim after rjsmin has run. A literal is then
byte for byte what the source says, whatever rjsmin does around it.
"""

from __future__ import annotations

import re

import rjsmin

_PLACEHOLDER = "__pcw_template_{}__"
_LOOKBACK = 64  # characters looked back at to tell a regular expression from a division
_WORD = re.compile(r"[A-Za-z_$][\w$]*$")
# After one of these, a `/` starts a regular expression, not a division.
_REGEX_AFTER_CHARS = frozenset("(,=:[!&|?{};+-*%<>~^")
_REGEX_AFTER_WORDS = frozenset((
    "return", "typeof", "case", "do", "else", "in", "of", "void", "yield", "await", "delete",
    "throw", "new", "instanceof",
))  # fmt: skip


class MinifyError(ValueError):
    """A module the scanner cannot read (an unclosed string, comment or template)."""


def _skip_quoted(source: str, start: int) -> int:
    """Return the index after the string literal that opens at start."""
    quote, index = source[start], start + 1
    while index < len(source):
        char = source[index]
        if char == "\\":
            index += 2
            continue
        if char == quote:
            return index + 1
        if char == "\n":
            break
        index += 1
    raise MinifyError(f"unclosed string at offset {start}")


def _skip_regex(source: str, start: int) -> int:
    """Return the index after the regular expression literal (and flags) opening at start."""
    index, in_class = start + 1, False
    while index < len(source):
        char = source[index]
        if char == "\\":
            index += 2
            continue
        if char == "\n":
            break
        if char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "/" and not in_class:
            index += 1
            while index < len(source) and (source[index].isalnum() or source[index] == "$"):
                index += 1
            return index
        index += 1
    raise MinifyError(f"unclosed regular expression at offset {start}")


def _skip_template(source: str, start: int) -> int:
    """Return the index after the template literal opening at start, nested ones included."""
    index = start + 1
    while index < len(source):
        char = source[index]
        if char == "\\":
            index += 2
        elif char == "`":
            return index + 1
        elif source.startswith("${", index):
            index, _ = _scan(source, index + 2, inside_braces=True)
        else:
            index += 1
    raise MinifyError(f"unclosed template literal at offset {start}")


def _regex_may_start(code_before: str) -> bool:
    """Return whether a `/` after this code starts a regular expression."""
    text = code_before.rstrip()
    if not text:
        return True
    if text[-1] in _REGEX_AFTER_CHARS:
        return True
    word = _WORD.search(text)
    return word is not None and word.group() in _REGEX_AFTER_WORDS


def _scan(source: str, start: int, *, inside_braces: bool) -> tuple[int, list[tuple[int, int]]]:
    """Scan code from start; return where it ends and its outermost templates' spans.

    Inside a template's `${`, the code ends after the `}` that closes it.
    """
    spans: list[tuple[int, int]] = []
    depth, index = 0, start
    while index < len(source):
        char = source[index]
        if char in "\"'":
            index = _skip_quoted(source, index)
        elif source.startswith("//", index):
            newline = source.find("\n", index)
            index = len(source) if newline < 0 else newline
        elif source.startswith("/*", index):
            end = source.find("*/", index + 2)
            if end < 0:
                raise MinifyError(f"unclosed comment at offset {index}")
            index = end + 2
        elif char == "/" and _regex_may_start(source[max(0, index - _LOOKBACK) : index]):
            index = _skip_regex(source, index)
        elif char == "`":
            end = _skip_template(source, index)
            spans.append((index, end))
            index = end
        else:
            if char == "{":
                depth += 1
            elif char == "}":
                if inside_braces and depth == 0:
                    return index + 1, spans
                depth -= 1
            index += 1
    if inside_braces:
        raise MinifyError(f"unclosed ${{ at offset {start}")
    return index, spans


def template_literals(source: str) -> list[str]:
    """Return the module's outermost template literals, in order, as written."""
    _, spans = _scan(source, 0, inside_braces=False)
    return [source[begin:end] for begin, end in spans]


def minify_js(source: str) -> str:
    """Return the module minified by rjsmin, every template literal kept verbatim."""
    _, spans = _scan(source, 0, inside_braces=False)
    if _PLACEHOLDER.format("") in source:
        raise MinifyError("the module uses the placeholder's name")
    pieces, taken, cursor = [], [], 0
    for number, (begin, end) in enumerate(spans):
        pieces += [source[cursor:begin], _PLACEHOLDER.format(number)]
        taken.append(source[begin:end])
        cursor = end
    pieces.append(source[cursor:])
    minified = rjsmin.jsmin("".join(pieces))
    for number, literal in enumerate(taken):
        placeholder = _PLACEHOLDER.format(number)
        if minified.count(placeholder) != 1:
            raise MinifyError(f"template literal {number} was not kept once by rjsmin")
        minified = minified.replace(placeholder, literal)
    return minified
