"""The page modules' minifier keeps every template literal byte for byte (scripts/js_minify.py).

rjsmin alone dropped the space at the end of a template nested in another's `${...}`: the alert
list read "GPU 2(NVIDIA" and "Test notification #6queued".
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "services" / "web" / "static"
sys.path.insert(0, str(ROOT / "scripts"))

from js_minify import MinifyError, minify_js, template_literals  # noqa: E402


def test_a_nested_template_keeps_its_trailing_space():
    source = "const a = `x ${b ? `GPU ${i} ` : ''}(y) #${n} queued`;\n"
    assert minify_js(source) == "const a=`x ${b ? `GPU ${i} ` : ''}(y) #${n} queued`;"


def test_comments_strings_and_regexes_holding_backticks_are_not_templates():
    source = (
        "// a comment with ` in it\n"
        "const s = 'a ` in a string';\n"
        "const r = /a`b/g; /* and ` here */\n"
        "const half = total / 2 / 1;\n"
        "return `t ${ {a: 1}.a } `;\n"
    )
    assert template_literals(source) == ["`t ${ {a: 1}.a } `"]
    minified = minify_js(source)
    assert "'a ` in a string'" in minified and "/a`b/g" in minified
    assert "`t ${ {a: 1}.a } `" in minified and "comment" not in minified


def test_an_unclosed_template_is_an_error_not_a_wrong_file():
    with pytest.raises(MinifyError, match="unclosed template"):
        minify_js("const a = `never closed;\n")


@pytest.mark.parametrize(
    "module",
    [STATIC / "app.js", *sorted((STATIC / "js").glob("*.js"))],
    ids=lambda path: path.name,
)
def test_every_page_module_keeps_its_template_literals(module: Path):
    source = module.read_text(encoding="utf-8")
    minified = minify_js(source)
    assert template_literals(minified) == template_literals(source)
    assert len(minified) < len(source)
