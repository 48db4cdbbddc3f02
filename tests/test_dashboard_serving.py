"""The HTTP edge serves the built dashboard at `/`: its files from memory, compressed, cached
by their hashes, with a strict content policy; every page path gets the app."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.browser import Dashboard, find, page_errors


def test_pages_get_the_app_and_assets_are_cached_for_good(dashboard: Dashboard) -> None:
    with httpx.Client(base_url=dashboard.url) as http:
        index = http.get("/")
        assert index.status_code == 200
        assert index.headers["content-type"] == "text/html; charset=utf-8"
        assert index.headers["cache-control"] == "no-cache"
        policy = index.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert index.headers["x-content-type-options"] == "nosniff"
        # A page's own path (a deep link) gets the same app.
        pages = ("/runs", "/runs/0193a6b2-0000-7000-8000-000000000000", "/flows", "/flows/x")
        for page in (*pages, "/deployments", "/concurrency-limits", "/runs/"):
            deep = http.get(page)
            assert (deep.status_code, deep.text) == (200, index.text), page
        scripts = re.findall(r'(?:src|href)="(/assets/[^"]+)"', index.text)
        assert any(s.endswith(".js") for s in scripts) and any(s.endswith(".css") for s in scripts)
        for asset in scripts:
            plain = http.get(asset, headers={"accept-encoding": "identity"})
            packed = http.get(asset, headers={"accept-encoding": "gzip"})
            assert plain.status_code == packed.status_code == 200
            assert "immutable" in plain.headers["cache-control"]
            assert "content-encoding" not in plain.headers
            assert packed.headers.get("content-encoding") == "gzip"
            assert packed.content == plain.content  # httpx decompresses
            assert int(packed.headers["content-length"]) < len(plain.content)
            # Each coding has its own validator, and a 304 answers only its own.
            assert packed.headers["etag"] != plain.headers["etag"]
            for sent in (plain, packed):
                coding = sent.headers.get("content-encoding", "identity")
                again = http.get(
                    asset,
                    headers={"if-none-match": sent.headers["etag"], "accept-encoding": coding},
                )
                assert (again.status_code, again.content) == (304, b""), coding
                assert again.headers["etag"] == sent.headers["etag"]
            other = http.get(
                asset,
                headers={"if-none-match": plain.headers["etag"], "accept-encoding": "gzip"},
            )
            assert other.status_code == 200 and other.headers["etag"] == packed.headers["etag"]
            # gzip with a weight of 0 is refused, and `*` takes it.
            for header, gzipped in (("gzip;q=0, identity", False), ("*", True), ("br", False)):
                answer = http.get(asset, headers={"accept-encoding": header})
                assert ("content-encoding" in answer.headers) is gzipped, header
        head = http.head(scripts[0])
        assert head.status_code == 200 and head.content == b""
        # A file that is not there, and the API's paths, keep the edge's JSON 404.
        for missing in (
            "/assets/nope.js",
            "/favicon.ico",
            "/runwire.v2.FlowService/GetFlow",
            "/healthz/",
            "/api/flows",
            "/x/y",
        ):
            gone = http.get(missing)
            assert gone.status_code == 404, missing
            assert gone.json()["code"] == "unimplemented"


def test_the_app_starts_in_a_browser(dashboard: Dashboard, browser: Any) -> None:
    browser.get(dashboard.url + "/runs")
    assert find(browser, "header.top .brand").text == "Runwire"
    assert page_errors(browser) == []
