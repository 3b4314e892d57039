"""Create a CURVE key pair for a sampler or a hub: NAME.key (public) and NAME.key_secret.

    python -m services.keygen NAME [--dir DIR]

The secret file is readable by its owner only (0600) from the moment it exists: both files are
written into a private folder first, then linked into DIR, which also refuses to overwrite a
file of the same name.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import zmq.auth

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class KeygenError(Exception):
    """The key pair cannot be created; the message says why."""


def create_pair(name: str, folder: Path) -> tuple[Path, Path]:
    """Write NAME.key and NAME.key_secret into folder; return their paths; never overwrite."""
    if not NAME_PATTERN.fullmatch(name):
        raise KeygenError(
            f"{name!r} is not a key name: use 1 to 64 letters, digits, '.', '_' or '-'"
        )
    if not folder.is_dir():
        raise KeygenError(f"{folder} is not a folder")
    public_path, secret_path = folder / f"{name}.key", folder / f"{name}.key_secret"
    for path in (public_path, secret_path):
        if path.exists():
            raise KeygenError(f"{path} exists already: not overwritten")
    private = Path(tempfile.mkdtemp(prefix=".pcw-keygen-", dir=folder))  # mode 0700
    try:
        made_public, made_secret = (Path(p) for p in zmq.auth.create_certificates(private, name))
        made_secret.chmod(0o600)
        made_public.chmod(0o644)
        linked: list[Path] = []
        try:
            for made, path in ((made_public, public_path), (made_secret, secret_path)):
                os.link(made, path)  # fails if the name was taken meanwhile
                linked.append(path)
        except FileExistsError as error:
            for path in linked:
                path.unlink()
            raise KeygenError(f"{error.filename2 or error.filename} exists already") from None
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return public_path, secret_path


def main(argv: list[str] | None = None) -> int:
    """Create a key pair; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="pycudawatch-keygen",
        description="Create a CURVE key pair: NAME.key (public, to copy to the other side) and "
        "NAME.key_secret (secret, mode 0600, stays on this machine).",
    )
    parser.add_argument("name", help="the key's name, such as hub or the sampler's host name")
    parser.add_argument("--dir", type=Path, default=Path("."), help="folder to write into (.)")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(message)s")
    try:
        public_path, secret_path = create_pair(args.name, args.dir)
    except (KeygenError, OSError) as error:
        log.error("pycudawatch-keygen: %s", error)
        return EXIT_FAILED
    log.info("public key: %s (copy it to the other side)", public_path)
    log.info("secret key: %s (keep it here; only its owner can read it)", secret_path)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
