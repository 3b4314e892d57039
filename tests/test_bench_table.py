"""The benchmark's Markdown table says how long its run took, so a published table carries it."""

from __future__ import annotations

from tests.bench.table import render_markdown


def test_markdown_header_gives_the_run_time():
    header = render_markdown([], [], "full", elapsed_s=412.4).splitlines()[0]
    assert "(full run, 412 s)" in header
