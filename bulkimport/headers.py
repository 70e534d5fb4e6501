"""Security headers on every response: no framing by other sites, no MIME sniffing, no referrer
beyond the site, and a Content-Security-Policy that allows scripts, styles and images from the
site itself only — no inline script, no inline style, no CDN.

A view whose page needs more (the template editor's preview shows an e-mail's own inline styles)
says so with `csp_allows`; the policy is otherwise the same everywhere, except for a
`FramedDocument`: HTML the site did not write, shown in a sandboxed frame of one of its pages.
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
# A FramedDocument (an e-mail's HTML part) may show its own inline styles and embedded images,
# and nothing else: it loads, runs, submits and frames nothing; it is sandboxed even when opened
# on its own; and only this site's pages may frame it.
FRAMED_DOCUMENT_POLICY = {
    "default-src": "'none'",
    "style-src": "'unsafe-inline'",
    "img-src": "data:",
    "form-action": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'self'",
    "sandbox": "",
}
HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: Flask-WTF checks that a POST over HTTPS comes from this site by its
    # Referer, so the site must keep sending it to itself.
    "Referrer-Policy": "same-origin",
}


class FramedDocument(Response):
    """A response of HTML the site did not write, for a sandboxed frame of one of its pages; it
    gets FRAMED_DOCUMENT_POLICY instead of the site's policy."""

    default_mimetype = "text/html"


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
    if isinstance(response, FramedDocument):
        response.headers["Content-Security-Policy"] = "; ".join(
            f"{name} {sources}".strip() for name, sources in FRAMED_DOCUMENT_POLICY.items())
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


def init_app(app: Flask) -> None:
    """Send the security headers on every response of `app`."""
    app.after_request(add_security_headers)
