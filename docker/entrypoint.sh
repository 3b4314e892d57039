#!/bin/sh
# Start as root only to hand ./db (a bind mount Docker creates root-owned) and the log pipes
# to PUID:PGID, then run the command as that user; with --user or PUID=0, change nothing.
set -eu
uid="${PUID:-1000}" gid="${PGID:-1000}"
case "$uid$gid" in ""|*[!0-9]*) echo "pcw-entrypoint: PUID=$uid PGID=$gid is not allowed: numbers" >&2; exit 2;; esac
# The host name label: PCW_HOST_NAME, else the host file mounted at /etc/host-hostname.
if [ -z "${PCW_HOST_NAME:-}" ] && [ -s /etc/host-hostname ]; then
    read -r PCW_HOST_NAME < /etc/host-hostname || true
fi
if [ -n "${PCW_HOST_NAME:-}" ]; then export PCW_HOST_NAME; else unset PCW_HOST_NAME; fi
if [ "$(id -u)" != 0 ] || [ "$uid" = 0 ]; then exec "$@"; fi
db="${PCW_DB_PATH:-db/gpu_stats.db}"
case "$db" in /*) ;; *) db="/app/$db";; esac
dir="$(dirname "$db")"
mkdir -p "$dir"
find "$dir" -maxdepth 1 \( ! -user "$uid" -o ! -group "$gid" \) -exec chown "$uid:$gid" {} +
# supervisord reopens /dev/stdout for the programs: the pipes must be theirs too.
chown "$uid:$gid" /proc/self/fd/1 /proc/self/fd/2 2>/dev/null || true
exec python -c "import os, sys; os.setgroups([]); os.setgid(int(sys.argv[2])); os.setuid(int(sys.argv[1])); os.execvp(sys.argv[3], sys.argv[3:])" "$uid" "$gid" "$@"
