"""Security headers on every response: no framing by other sites, no MIME sniffing, no referrer
beyond the site, and a Content-Security-Policy that allows scripts, styles and images from the
site itself only — no inline script, no inline style, no CDN.

A view whose page needs more (the template editor's preview shows an e-mail's own inline styles)
says so with `csp_allows`; the policy is otherwise the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response, current_app, request

CONTENT_SECURITY_POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",  # Bootstrap draws checkboxes and arrows with data: SVGs
    "font-src": "'self'",
    "connect-src": "'self'",
    "frame-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: Flask-WTF checks that a POST over HTTPS comes from this site by its
    # Referer, so the site must keep sending it to itself.
    "Referrer-Policy": "same-origin",
}


def csp_allows(**sources: str) -> Callable:
    """Decorate a view whose page needs more sources than the policy gives, e.g.
    `@csp_allows(style_src="'unsafe-inline'")`; each adds to the directive it names."""
    def mark(view):
        view.csp_additions = {name.replace("_", "-"): value for name, value in sources.items()}
        return view
    return mark


def policy_text(additions: dict[str, str] | None = None) -> str:
    """The Content-Security-Policy header value, with `additions` appended to their
    directives."""
    additions = additions or {}
    return "; ".join(f"{name} {sources} {additions[name]}" if name in additions
                     else f"{name} {sources}"
                     for name, sources in CONTENT_SECURITY_POLICY.items())


def add_security_headers(response: Response) -> Response:
    """Set the security headers on `response` (an after_request hook: pages, redirects, errors,
    static files and JSON alike)."""
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    response.headers["Content-Security-Policy"] = policy_text(
        getattr(view, "csp_additions", None))
    for name, value in HEADERS.items():
        response.headers[name] = value
    return response


def init_app(app: Flask) -> None:
    """Send the security headers on every response of `app`."""
    app.after_request(add_security_headers)
