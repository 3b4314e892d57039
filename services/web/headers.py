"""Security headers on every response: a Content-Security-Policy of the page's own assets only.

Set from aiohttp's on_response_prepare signal rather than a middleware: the signal runs for
every response just before its headers go out, so it also covers the websocket handshake, which
is sent before a middleware would see it, and the errors aiohttp answers itself (404, 405).
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

# The page loads only its own scripts, styles, fonts and images (Bootstrap's icons are data:
# URLs); the websocket is on the same origin ('self' covers ws: and wss: in CSP Level 3, which
# current browsers implement). No inline script or style, no frames, no forms, no <base>.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "camera",
        "microphone",
        "geolocation",
        "usb",
        "payment",
        "display-capture",
    )
)
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": PERMISSIONS_POLICY,
    # aiohttp would say "Python/3.x aiohttp/3.y": no version for a scanner to match
    "Server": "pyCudaWatch",
}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Set the security headers on a response about to be sent (an on_response_prepare hook)."""
    response.headers.update(SECURITY_HEADERS)


def setup_security_headers(app: web.Application) -> None:
    """Send the security headers on every response of app."""
    app.on_response_prepare.append(add_security_headers)
