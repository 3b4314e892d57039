"""Fetch the dashboard's vendored browser assets from the npm registry, pinned and verified.

Usage: python scripts/update_assets.py [--check] [--build] [--dest DIR]

Each pinned package tarball is downloaded from https://registry.npmjs.org only; its sha512 is
checked against both the pin below and the registry's own `dist.integrity`. Only the files the
page needs, plus the package's licence, are taken from the tarball (read as bytes, never
extracted by path) into services/web/static/vendor/<package>/, byte for byte as published but
for a script's last-line `//# sourceMappingURL=` comment: no .map is shipped, and a browser's
developer tools would ask for it and get a 404. Each served .js/.css gets a gzip copy
(`<file>.gz`, level 9, no timestamp, so reruns are identical) for precompressed serving. Files
in a package folder that the pins no longer name are removed.

Then it builds services/web/static/dist/ from those files and the page's own sources (see
scripts/asset_build.py): Bootstrap purged of the rules no page uses, and the page's modules
minified. --build does only that step, offline: run it after changing a template or a script.

--check downloads and verifies the same way but writes nothing: exit status 1 when a file on
disk differs from what the pins and the build produce (or is missing), 0 when all match.

To move a pin: change `version`, set `integrity` to the registry's `dist.integrity` for it
(https://registry.npmjs.org/<name>/<version>), rerun, and look at the page.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import logging
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from asset_build import build_differences, built_files, write_build

REGISTRY = "https://registry.npmjs.org"
STATIC = Path(__file__).resolve().parent.parent / "services" / "web" / "static"
DEFAULT_DEST = STATIC / "vendor"
BUILD_DEST = STATIC / "dist"
SOURCE_MAP_PREFIX = b"//# sourceMappingURL="
TIMEOUT_S = 60.0
MAX_TARBALL_BYTES = 32 << 20
COMPRESSED_SUFFIXES = (".js", ".css")

log = logging.getLogger("update_assets")


@dataclass(frozen=True)
class Package:
    """One pinned npm package: which files of its tarball go into which vendor folder."""

    name: str
    version: str
    integrity: str  # the registry's dist.integrity: "sha512-" + base64 digest of the .tgz
    folder: str  # under vendor/
    files: tuple[tuple[str, str], ...]  # (path inside the tarball's package/, file name)


PACKAGES: tuple[Package, ...] = (
    Package(
        name="bootstrap",
        version="5.3.9",
        integrity="sha512-20cU0rcfw8WdxtVbmfU+xT2EjvVTw9Ror/h1Qvd7DXCujRg8OO9mdBCsmTHdJFf3BuadmBNJtgIuUXsBqSkk/w==",
        folder="bootstrap",
        files=(
            ("dist/css/bootstrap.min.css", "bootstrap.min.css"),
            ("dist/js/bootstrap.bundle.min.js", "bootstrap.bundle.min.js"),
            ("LICENSE", "LICENSE"),
        ),
    ),
    Package(
        name="chart.js",
        version="4.6.1",
        integrity="sha512-hJyniucsFmq//EvXYvJ6c6mahPoI3kaxdjVH8awTaJ/fDNWeSqqqArixMJWkWNN6fcYvPU3HneSANFNYtRi61g==",
        folder="chart.js",
        files=(
            ("dist/chart.umd.min.js", "chart.umd.min.js"),
            ("LICENSE.md", "LICENSE.md"),
        ),
    ),
    Package(
        name="chartjs-adapter-date-fns",
        version="3.0.0",
        integrity="sha512-Rs3iEB3Q5pJ973J93OBTpnP7qoGwvq3nUnoMdtxO+9aoJof7UFcRbWcIDteXuYd1fgAvct/32T9qaLyLuZVwCg==",
        folder="chartjs-adapter-date-fns",
        files=(
            (
                "dist/chartjs-adapter-date-fns.bundle.min.js",
                "chartjs-adapter-date-fns.bundle.min.js",
            ),
            ("LICENSE.md", "LICENSE.md"),
        ),
    ),
    # The adapter's bundle contains date-fns 2.19 (its pinned devDependency): ship that licence.
    Package(
        name="date-fns",
        version="2.19.0",
        integrity="sha512-X3bf2iTPgCAQp9wvjOQytnf5vO5rESYRXlPIVcgSbtT5OTScPcsf9eZU+B/YIkKAtYr5WeCii58BgATrNitlWg==",
        folder="chartjs-adapter-date-fns",
        files=(("LICENSE.md", "LICENSE-date-fns.md"),),
    ),
)


class AssetError(RuntimeError):
    """A download, a checksum or a tarball is not what the pins say."""


def tarball_url(package: Package) -> str:
    """Return the registry URL of the package's tarball (unscoped names only)."""
    if package.name.startswith("@"):
        raise AssetError(f"{package.name}: scoped packages are not supported")
    return f"{REGISTRY}/{package.name}/-/{package.name}-{package.version}.tgz"


def fetch(url: str, limit_bytes: int = MAX_TARBALL_BYTES) -> bytes:
    """Download one registry URL; refuse any other host and anything over limit_bytes."""
    if not url.startswith(REGISTRY + "/"):
        raise AssetError(f"refusing to download from outside {REGISTRY}: {url}")
    request = urllib.request.Request(url, headers={"User-Agent": "pycudawatch-update-assets"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        if not response.geturl().startswith(REGISTRY + "/"):
            raise AssetError(f"{url} was redirected to {response.geturl()}")
        data = response.read(limit_bytes + 1)
    if len(data) > limit_bytes:
        raise AssetError(f"{url} is larger than {limit_bytes} bytes")
    return data


def integrity_of(data: bytes) -> str:
    """Return the npm/SRI integrity string ("sha512-<base64>") of some bytes."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


def registry_integrity(package: Package) -> str:
    """Return the registry's dist.integrity for the pinned version, checking its tarball URL."""
    metadata = json.loads(fetch(f"{REGISTRY}/{package.name}/{package.version}", 4 << 20))
    dist = metadata.get("dist") or {}
    tarball = dist.get("tarball")
    if tarball != tarball_url(package):
        raise AssetError(f"{package.name}@{package.version}: unexpected tarball {tarball}")
    integrity = dist.get("integrity")
    if not isinstance(integrity, str) or not integrity.startswith("sha512-"):
        raise AssetError(f"{package.name}@{package.version}: registry gives no sha512 integrity")
    return integrity


def verified_tarball(package: Package) -> bytes:
    """Download the package's tarball and check it against the pin and the registry."""
    published = registry_integrity(package)
    if published != package.integrity:
        raise AssetError(
            f"{package.name}@{package.version}: registry integrity {published} "
            f"differs from the pin {package.integrity}"
        )
    data = fetch(tarball_url(package))
    actual = integrity_of(data)
    if actual != package.integrity:
        raise AssetError(f"{package.name}@{package.version}: tarball sha512 is {actual}")
    return data


def extract(package: Package, tarball: bytes) -> dict[str, bytes]:
    """Return {file name: bytes} for the pinned files, read from the tarball's regular files."""
    wanted = {f"package/{member}": name for member, name in package.files}
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for info in archive:
            name = wanted.get(info.name)
            if name is None:
                continue
            handle = archive.extractfile(info) if info.isfile() else None
            if handle is None:
                raise AssetError(f"{package.name}: {info.name} is not a regular file")
            found[name] = without_source_map(name, handle.read())
    missing = sorted(set(wanted.values()) - found.keys())
    if missing:
        raise AssetError(f"{package.name}@{package.version}: tarball lacks {', '.join(missing)}")
    return found


def without_source_map(name: str, data: bytes) -> bytes:
    """Return a script without its last-line source-map comment (the .map is not shipped)."""
    if not name.endswith(".js"):
        return data
    body, _, last = data.rstrip(b"\n").rpartition(b"\n")
    return body + b"\n" if last.startswith(SOURCE_MAP_PREFIX) else data


def with_compressed(files: dict[str, bytes]) -> dict[str, bytes]:
    """Add a reproducible `<name>.gz` beside each served .js/.css file."""
    result = dict(files)
    for name, data in files.items():
        if name.endswith(COMPRESSED_SUFFIXES):
            result[name + ".gz"] = gzip.compress(data, compresslevel=9, mtime=0)
    return result


def planned_files(packages: tuple[Package, ...]) -> dict[str, dict[str, bytes]]:
    """Download and verify every package; return {folder: {file name: bytes}}."""
    folders: dict[str, dict[str, bytes]] = {}
    for package in packages:
        files = with_compressed(extract(package, verified_tarball(package)))
        folder = folders.setdefault(package.folder, {})
        clash = folder.keys() & files.keys()
        if clash:
            raise AssetError(f"{package.folder}: two packages write {', '.join(sorted(clash))}")
        folder.update(files)
        log.info("%s@%s verified (%s)", package.name, package.version, package.integrity[:23])
    return folders


def differences(dest: Path, folders: dict[str, dict[str, bytes]]) -> list[str]:
    """Return the paths under dest that are missing, differ, or are not pinned."""
    found = []
    for folder, files in folders.items():
        for name, data in files.items():
            path = dest / folder / name
            if not path.is_file() or path.read_bytes() != data:
                found.append(str(path))
        if (dest / folder).is_dir():
            found.extend(str(path) for path in (dest / folder).iterdir() if path.name not in files)
    return sorted(found)


def write(dest: Path, folders: dict[str, dict[str, bytes]]) -> None:
    """Write every folder's files, replacing each atomically, and remove unpinned files."""
    for folder, files in folders.items():
        target = dest / folder
        target.mkdir(parents=True, exist_ok=True)
        for stale in target.iterdir():
            if stale.name not in files and stale.is_file():
                stale.unlink()
                log.info("removed %s", stale)
        for name, data in sorted(files.items()):
            path = target / name
            temporary = path.with_name(path.name + ".tmp")
            temporary.write_bytes(data)
            temporary.replace(path)
            log.info("wrote %s (%d bytes)", path, len(data))


def main(argv: list[str] | None = None) -> int:
    """Fetch, verify and write (or with --check, compare) the vendored assets; return a status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="the vendor folder")
    parser.add_argument("--check", action="store_true", help="compare only, write nothing")
    parser.add_argument(
        "--build", action="store_true", help="only build static/dist/ from the files on disk"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    changed: list[str] = []
    if not args.build:
        try:
            folders = planned_files(PACKAGES)
        except (AssetError, OSError, tarfile.TarError, ValueError) as error:
            log.error("assets not updated: %s", error)
            return 1
        if args.check:
            changed += differences(args.dest, folders)
        else:
            write(args.dest, folders)
    built = built_files()
    if args.check:
        changed += build_differences(BUILD_DEST, built)
        for path in changed:
            log.error("differs from the pins or the build: %s", path)
        return 1 if changed else 0
    write_build(BUILD_DEST, built)
    log.info("built %s (%d files)", BUILD_DEST, len(built))
    return 0


if __name__ == "__main__":
    sys.exit(main())
