"""gunicorn's access log without the tokens of set-password links: the path of an invitation's
link is the secret itself, and an access log is read by more people than the user it was sent
to. Used as `gunicorn --logger-class bulkimport.access_log.AccessLogger`."""

from __future__ import annotations

from gunicorn.glogging import Logger

from .logs import redact_links


class AccessLogger(Logger):
    """gunicorn's logger, writing /set-password/[link] for every link's path."""

    def atoms(self, resp, req, environ, request_time):
        """gunicorn's log atoms with the request line, path and URI redacted."""
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "{raw_uri}e"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact_links(atoms[key])
        return atoms
