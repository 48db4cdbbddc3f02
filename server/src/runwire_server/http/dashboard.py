"""The web dashboard's built files (`runwire_server/dashboard`, from `dashboard/` by vite),
served by the HTTP edge at `/`: same origin as the API, so the browser needs no CORS.

The files are read once, at start, and served from memory, compressed once when the browser
takes gzip. Hashed assets are cached for good; `index.html` is checked each time, so a new
server's dashboard is seen on the next load. The app's page paths (`/runs/…`) get
`index.html`, since the app routes in the browser; every other path keeps the edge's JSON 404.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from starlette.types import Receive, Scope, Send

BUILT = Path(__file__).resolve().parent.parent / "dashboard"
INDEX = "/index.html"
# The first segments of the app's routes (dashboard/src/app.tsx); `/` is the runs page too.
PAGES = frozenset({"runs", "flows", "deployments", "concurrency-limits"})
# Smaller files gain little from compression and cost a header more.
COMPRESS_FROM = 1024
# The page runs only the server's own scripts and styles and talks only to this origin; it may
# not be framed (clickjacking of the cancel and delete buttons).
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)


@dataclass(frozen=True)
class _File:
    body: bytes
    gzipped: bytes | None
    content_type: bytes
    etag: bytes
    cache_control: bytes


class Dashboard:
    """Answers GET and HEAD for the dashboard's files and pages."""

    def __init__(self, files: dict[str, _File]) -> None:
        self._files = files

    @classmethod
    def load(cls, root: Path = BUILT) -> Dashboard | None:
        """The dashboard built into `root`; None when it was not built (a source checkout
        whose dashboard/ was never built)."""
        if not (root / "index.html").is_file():
            return None
        files: dict[str, _File] = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            url = "/" + path.relative_to(root).as_posix()
            files[url] = _read(path, immutable=url.startswith("/assets/"))
        return cls(files)

    def serves(self, path: str) -> bool:
        """Whether `path` is a file of the dashboard or one of its pages. API-like paths
        (`/healthz/`, `/api/flows`) and unknown files keep the edge's JSON 404."""
        if path in self._files or path == "/":
            return True
        return "." not in path and path.split("/", 2)[1] in PAGES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        file = self._files.get(scope["path"]) or self._files[INDEX]
        request = dict(scope.get("headers", ()))
        packed = file.gzipped is not None and _takes_gzip(request.get(b"accept-encoding", b""))
        # Each coding of a file is its own representation, with its own validator.
        etag = file.etag[:-1] + b'-gz"' if packed else file.etag
        headers = [
            (b"content-type", file.content_type),
            (b"cache-control", file.cache_control),
            (b"etag", etag),
            (b"vary", b"accept-encoding"),
            *SECURITY_HEADERS,
        ]
        if etag in _tags(request.get(b"if-none-match", b"")):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        body = file.body
        if packed and file.gzipped is not None:
            body = file.gzipped
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send(
            {
                "type": "http.response.body",
                "body": b"" if scope["method"] == "HEAD" else body,
            }
        )


def _read(path: Path, immutable: bool) -> _File:
    body = path.read_bytes()
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "image/svg+xml"):
        kind += "; charset=utf-8"
    gzipped = None
    if len(body) >= COMPRESS_FROM and not kind.startswith(("image/png", "image/jpeg", "font/")):
        # mtime=0: the same bytes on every start, so the ETag's promise holds for both forms.
        packed = gzip.compress(body, compresslevel=9, mtime=0)
        gzipped = packed if len(packed) < len(body) else None
    return _File(
        body=body,
        gzipped=gzipped,
        content_type=kind.encode(),
        etag=b'"' + hashlib.sha256(body).hexdigest()[:20].encode() + b'"',
        cache_control=b"public, max-age=31536000, immutable" if immutable else b"no-cache",
    )


def _takes_gzip(header: bytes) -> bool:
    """Whether an Accept-Encoding header accepts gzip: named (or `*`) with a weight above 0."""
    weights: dict[bytes, float] = {}
    for item in header.lower().split(b","):
        coding, _, params = item.partition(b";")
        weight = 1.0
        for param in params.split(b";"):
            name, _, value = param.strip().partition(b"=")
            if name == b"q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[coding.strip()] = weight
    return weights.get(b"gzip", weights.get(b"x-gzip", weights.get(b"*", 0.0))) > 0


def _tags(header: bytes) -> set[bytes]:
    return {tag.strip().removeprefix(b"W/") for tag in header.split(b",")}
