ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE} AS build
# pyCudaWatch image: sampler, writer and web under supervisord (docs/docker.md).
# Builds on any Debian-based image with python3 >= 3.11 and its venv module; plain Dockerfile
# syntax only, so the legacy builder (docker-compose 1.29) and BuildKit build it the same.

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/venv
WORKDIR /src
# Dependencies first, from pyproject.toml alone: a change to the code rebuilds in seconds.
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && /opt/venv/bin/pip install -r requirements.txt
COPY README.md ./
COPY common ./common
COPY services ./services
# The installer itself stays behind in this stage: the runtime image needs no pip or setuptools.
RUN /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/pip uninstall -y pip setuptools


FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="pyCudaWatch" \
      org.opencontainers.image.description="Self-hosted NVIDIA GPU monitor: NVML sampler, SQLite history, live web dashboard"

# TZ only sets the time zone of the log lines; readings are UTC epoch seconds whatever it says.
# The zone files are needed for names such as TZ=Europe/Berlin; slim bases may not have them.
RUN if [ ! -e /usr/share/zoneinfo/Etc/UTC ]; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tzdata \
      && rm -rf /var/lib/apt/lists/*; \
    fi

# The entrypoint runs as root only long enough to hand the database folder (a bind mount that
# Docker creates root-owned on a fresh clone) and the log pipes to PUID:PGID, then runs the
# command as that user. The image's own Python drops the privileges: no gosu or setpriv needed.
# Run with --user, or with PUID=0, it changes nothing and runs the command as it is.
COPY docker/entrypoint.sh /usr/local/bin/pcw-entrypoint
RUN chmod 0755 /usr/local/bin/pcw-entrypoint

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY supervisord.conf ./
RUN mkdir -p /app/db

ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PUID=1000 \
    PGID=1000 \
    NVIDIA_DRIVER_CAPABILITIES=utility

EXPOSE 8000
# 200 while readings flow and the writer is well; the sampler publishes its first reading at start
# (services/sampler/main.py), so the start period covers a slow first start, not an interval.
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PCW_WEB_PORT', '8000'), timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/pcw-entrypoint"]
# supervisord is PID 1 (after the entrypoint's exec): it passes SIGTERM to every program and
# stops the writer last, so it stores the final tick before the container exits. A bad setting
# stops every program at once and the container exits with status 2 (supervisord.conf).
CMD ["supervisord", "-n", "-c", "/app/supervisord.conf", "-j", "/tmp/supervisord.pid"]
