"""The settings reference in docs/ is generated from the declarations and kept in step."""

from __future__ import annotations

from pathlib import Path

from common.config import SETTINGS
from common.settings_doc import render

DOC = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def test_docs_settings_md_is_what_the_declarations_generate():
    assert DOC.is_file(), "docs/settings.md is missing: python -m common.settings_doc > it"
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/settings.md is out of date: python -m common.settings_doc > docs/settings.md"
    )


def test_every_setting_has_a_row_in_the_reference():
    text = DOC.read_text(encoding="utf-8")

    missing = [variable for variable, _d, _p, _h in SETTINGS if f"\n| {variable} |" not in text]

    assert missing == []
