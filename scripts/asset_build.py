"""Build what the pages load from the readable sources: a purged Bootstrap and minified modules.

Run by scripts/update_assets.py (after it fetches the vendored packages, or alone with --build);
the output is committed under services/web/static/dist/ and a test rebuilds it to check that it
is up to date. Every step is deterministic, so a rebuild gives the same bytes:

- bootstrap.css: Bootstrap's bootstrap.min.css less every rule whose selectors all name a class
  that no template and no script of the page uses. The names used are every word of the
  templates and of static/app.js and static/js/*.js (a superset: text counts too), plus the
  prefixes that scripts complete at run time (`text-bg-${kind}` keeps every `text-bg-*`). Only
  the classes outside :not()/:is()/:has() decide; elements, ids and attributes are kept. Parsed
  with tinycss2, so a selector list, an @media block or a string is never cut in the middle.
- app.js and js/*.js: each module minified with rjsmin (comments and whitespace only, names
  kept; its template literals verbatim, scripts/js_minify.py), its relative imports given
  `?v=<build version>`, so that every module URL changes with
  any module and can be cached for a year. The readable sources stay where they are.
- manifest.json: the build version and, for each page's entry module, every module it imports
  directly or not, which the page preloads (modulepreload), fetching them at once rather than
  one import level after another.
- a reproducible gzip copy (`.gz`, no timestamp) beside each .js and .css, which aiohttp sends
  to browsers that accept gzip.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import re
from collections.abc import Iterable
from pathlib import Path

import rjsmin
import tinycss2
from js_minify import minify_js  # a sibling: scripts/ is on sys.path (run as a script, or tests)
from tinycss2 import ast

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "services" / "web"
STATIC = WEB / "static"
TEMPLATES = WEB / "templates"
ENTRIES = ("app.js", "js/gpu_page.js")  # the pages' module scripts, relative to static/
VERSION_CHARS = 16
COMPRESSED_SUFFIXES = (".js", ".css")

WORD_RE = re.compile(r"[A-Za-z_][\w-]*")
# A class name a script completes at run time: `text-bg-${kind}` or 'text-bg-' + kind
PREFIX_RE = re.compile(r"([A-Za-z][\w-]*-)(?:\$\{|'\s*\+|\"\s*\+)")
# After rjsmin: import{a}from'./x.js'; import'./x.js'; export{a}from'./x.js'
IMPORT_RE = re.compile(r"""(\bfrom\s*|\bimport\s*)(['"])(\.{1,2}/[^'"?]+\.js)\2""")
NESTED_AT_RULES = frozenset({"media", "supports", "container", "layer"})


def used_names(texts: Iterable[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    """Return every word of the texts, and the class prefixes that scripts complete."""
    words: set[str] = set()
    prefixes: set[str] = set()
    for text in texts:
        words.update(WORD_RE.findall(text))
        prefixes.update(PREFIX_RE.findall(text))
    return frozenset(words), tuple(sorted(prefixes))


def page_sources(static: Path = STATIC, templates: Path = TEMPLATES) -> list[Path]:
    """Return the files whose words decide which CSS rules the pages keep."""
    return [
        *sorted(templates.glob("*.html")),
        static / "app.js",
        *sorted((static / "js").glob("*.js")),
    ]


def _split_selectors(prelude: list[ast.Node]) -> list[list[ast.Node]]:
    """Return a rule's selector list split at its top-level commas."""
    selectors: list[list[ast.Node]] = [[]]
    for token in prelude:
        if isinstance(token, ast.LiteralToken) and token.value == ",":
            selectors.append([])
        else:
            selectors[-1].append(token)
    return selectors


def _classes(selector: list[ast.Node]) -> list[str]:
    """Return the class names of a selector outside functional pseudo-classes."""
    names = []
    for before, token in itertools.pairwise(selector):
        if (
            isinstance(before, ast.LiteralToken)
            and before.value == "."
            and isinstance(token, ast.IdentToken)
        ):
            names.append(token.value)
    return names


def _kept(selector: list[ast.Node], words: frozenset[str], prefixes: tuple[str, ...]) -> bool:
    """Return whether each class the selector needs is one the pages may use."""
    return all(name in words or name.startswith(prefixes) for name in _classes(selector))


def _purged_rules(
    rules: list[ast.Node], words: frozenset[str], prefixes: tuple[str, ...]
) -> list[str]:
    """Return the serialized rules that some page may use."""
    kept: list[str] = []
    for rule in rules:
        if isinstance(rule, ast.QualifiedRule):
            selectors = [
                tinycss2.serialize(selector).strip()
                for selector in _split_selectors(rule.prelude)
                if _kept(selector, words, prefixes)
            ]
            if selectors:
                kept.append(",".join(selectors) + "{" + tinycss2.serialize(rule.content) + "}")
        elif isinstance(rule, ast.AtRule):
            if rule.lower_at_keyword in NESTED_AT_RULES and rule.content is not None:
                inner = tinycss2.parse_rule_list(
                    rule.content, skip_comments=True, skip_whitespace=True
                )
                body = _purged_rules(inner, words, prefixes)
                if body:
                    prelude = tinycss2.serialize(rule.prelude).strip()
                    kept.append(f"@{rule.at_keyword} {prelude}{{{''.join(body)}}}")
            else:
                kept.append(rule.serialize())
        # ParseError nodes (none in Bootstrap's own file) are dropped, as a browser drops them
    return kept


def purge_css(css: str, words: frozenset[str], prefixes: tuple[str, ...]) -> str:
    """Return css without the rules no page uses; comments (the source-map link) dropped."""
    rules = tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True)
    return "".join(_purged_rules(rules, words, prefixes)) + "\n"


def module_imports(source: str) -> list[str]:
    """Return the relative module specifiers one module imports (minified or not)."""
    return [match.group(3) for match in IMPORT_RE.finditer(rjsmin.jsmin(source))]


def module_graph(static: Path, entry: str) -> list[str]:
    """Return the modules the entry imports directly or not, relative to static, sorted."""
    seen: set[str] = set()
    waiting = [entry]
    while waiting:
        path = waiting.pop()
        if path in seen:
            continue
        seen.add(path)
        folder = Path(path).parent
        for target in module_imports((static / path).read_text(encoding="utf-8")):
            waiting.append((folder / target).as_posix().replace("/./", "/").removeprefix("./"))
    return sorted(_normal(path) for path in seen - {entry})


def _normal(path: str) -> str:
    """Return a relative path with its `..` and `.` parts resolved."""
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


def minified_modules(static: Path) -> dict[str, str]:
    """Return {path relative to static: minified text} of app.js and js/*.js, imports versioned."""
    sources = [static / "app.js", *sorted((static / "js").glob("*.js"))]
    minified = {
        path.relative_to(static).as_posix(): minify_js(path.read_text(encoding="utf-8")) + "\n"
        for path in sources
    }
    version = build_version(minified)

    def versioned(match: re.Match[str]) -> str:
        prefix, quote, target = match.groups()
        return f"{prefix}{quote}{target}?v={version}{quote}"

    return {path: IMPORT_RE.sub(versioned, text) for path, text in minified.items()}


def build_version(files: dict[str, str]) -> str:
    """Return a hash of every minified module before versioning: any change changes it."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + files[path].encode() + b"\0")
    return digest.hexdigest()[:VERSION_CHARS]


def built_files(static: Path = STATIC, templates: Path = TEMPLATES) -> dict[str, bytes]:
    """Return {path under static/dist/: bytes} of the whole build."""
    texts = [path.read_text(encoding="utf-8") for path in page_sources(static, templates)]
    words, prefixes = used_names(texts)
    bootstrap = (static / "vendor" / "bootstrap" / "bootstrap.min.css").read_text(encoding="utf-8")
    files: dict[str, bytes] = {"bootstrap.css": purge_css(bootstrap, words, prefixes).encode()}
    modules = minified_modules(static)
    files.update((path, text.encode()) for path, text in modules.items())
    version = re.search(r"\?v=(\w+)", modules["app.js"])
    manifest = {
        "version": version.group(1) if version else "",
        "preload": {entry: module_graph(static, entry) for entry in ENTRIES},
    }
    files["manifest.json"] = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    for path, data in list(files.items()):
        if path.endswith(COMPRESSED_SUFFIXES):
            files[path + ".gz"] = gzip.compress(data, compresslevel=9, mtime=0)
    return files


def build_differences(dest: Path, files: dict[str, bytes]) -> list[str]:
    """Return the paths under dest that are missing, differ from the build, or are not built."""
    found = [
        str(dest / path)
        for path, data in files.items()
        if not (dest / path).is_file() or (dest / path).read_bytes() != data
    ]
    if dest.is_dir():
        built = {dest / path for path in files}
        found.extend(str(path) for path in dest.rglob("*") if path.is_file() and path not in built)
    return sorted(found)


def write_build(dest: Path, files: dict[str, bytes]) -> None:
    """Write the build under dest, replacing each file atomically; remove what it no longer has."""
    for path, data in sorted(files.items()):
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_bytes(data)
        temporary.replace(target)
    built = {dest / path for path in files}
    for stale in dest.rglob("*"):
        if stale.is_file() and stale not in built:
            stale.unlink()
