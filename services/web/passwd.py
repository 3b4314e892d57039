"""Print a PCW_AUTH_FILE line for a user: `python -m services.web.passwd USER >> users.txt`.

The password is asked twice on a terminal (never echoed), or read from the first line of
standard input when that is not a terminal (for scripts).
"""

from __future__ import annotations

import argparse
import getpass
import sys

from services.web.auth import hash_password

EXIT_OK = 0
EXIT_FAILED = 1
MIN_PASSWORD_CHARS = 8


def read_password() -> str | None:
    """Return the password from the terminal (asked twice) or stdin; None when they differ."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != password:
        return None
    return password


def main(argv: list[str] | None = None) -> int:
    """Print `user:hash` on standard output; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="pycudawatch-passwd",
        description="Print a user:hash line to append to the file PCW_AUTH_FILE names.",
    )
    parser.add_argument("user", help="the user name (no ':')")
    args = parser.parse_args(argv)
    user = args.user
    bad = not user or ":" in user or not user.isprintable() or user != user.strip()
    if bad or user.startswith("#"):  # PCW_AUTH_FILE skips a line that starts with '#'
        sys.stderr.write(
            f"pycudawatch-passwd: {user!r} is not a user name (no ':', spaces or leading '#')\n"
        )
        return EXIT_FAILED
    password = read_password()
    if password is None:
        sys.stderr.write("pycudawatch-passwd: the passwords differ\n")
        return EXIT_FAILED
    if len(password) < MIN_PASSWORD_CHARS:
        sys.stderr.write(f"pycudawatch-passwd: use at least {MIN_PASSWORD_CHARS} characters\n")
        return EXIT_FAILED
    sys.stdout.write(f"{user}:{hash_password(password)}\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
