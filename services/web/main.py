"""Start the web process: settings from the environment, then serve until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import os

from aiohttp import web

from common.config import startup_config
from services.transport.curve import CurveSetupError, hub_keys
from services.web.app import create_app
from services.web.auth import AuthFileError

logger = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 5.0  # well inside supervisord's stopwaitsecs (10 s)
EXIT_BAD_SETTING = 2
EXIT_CANNOT_LISTEN = 2  # a setting to change, as a bad one


def main() -> int:
    """Run the web process; return its exit status (0 after a graceful stop)."""
    config = startup_config(os.environ, "web")
    if config is None:
        return EXIT_BAD_SETTING
    try:
        hub_keys(config)  # checked here so that a bad one is one line and exit 2
    except CurveSetupError as error:
        logger.critical("web cannot start, bad setting: %s", error)
        return EXIT_BAD_SETTING
    try:
        app = create_app(config)
    except AuthFileError as error:
        logger.critical("web cannot start, bad setting: %s", error)
        return EXIT_BAD_SETTING
    # Per-request lines would flood supervisord's log with the page's polling; DEBUG shows them.
    access_log = logging.getLogger("aiohttp.access") if config.log_level == "DEBUG" else None
    listening = False

    def announce(_banner: str) -> None:
        """Log where the web serves; run_app calls it once every socket is bound."""
        nonlocal listening
        listening = True
        logger.info(
            "serving on http://%s:%d, reading %s, live feed from %s",
            config.web_host,
            config.web_port,
            config.db_path,
            ", ".join(config.subscribe),
        )

    try:
        # run_app turns SIGTERM and SIGINT into a graceful stop: websockets are told GOING_AWAY,
        # requests in flight finish, then the feed and the database reader close.
        web.run_app(
            app,
            host=config.web_host,
            port=config.web_port,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            access_log=access_log,
            print=announce,
        )
    except OSError as error:
        if listening:
            raise
        # Before the sockets were bound: the address is taken, not this host's, or not a name.
        logger.critical(
            "web cannot listen on %s:%d, set PCW_WEB_HOST and PCW_WEB_PORT to a free address: %s",
            config.web_host,
            config.web_port,
            error.strerror or error,
        )
        return EXIT_CANNOT_LISTEN
    logger.info("stopped")
    return 0
