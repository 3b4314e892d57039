"""The pages' built assets: which modules a page preloads, by the URLs its scripts import them.

scripts/update_assets.py builds static/dist/ (a purged Bootstrap, minified modules) and writes
dist/manifest.json: the build version, and each entry module's imports, direct or not. A page
lists those as <link rel="modulepreload">, so the browser fetches them all at once instead of one
import level after another, each by the very URL (`?v=<build version>`) its importer asks for.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

DIST_DIR = Path(__file__).parent / "static" / "dist"
MANIFEST = "manifest.json"


@cache
def _manifest(dist_dir: Path = DIST_DIR) -> dict:
    """Return the build's manifest, read once (it changes only with a release)."""
    return json.loads((dist_dir / MANIFEST).read_text(encoding="utf-8"))


def module_preloads(entry: str) -> list[str]:
    """Return the paths under static/dist/, with ?v=, of every module entry imports."""
    manifest = _manifest()
    version = manifest["version"]
    return [f"{path}?v={version}" for path in manifest["preload"].get(entry, [])]
