"""The console's static files: only the names in ASSETS, each with its type, the strict policy and an ETag."""

from __future__ import annotations

import fnmatch
import re

import azure.functions as func
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.triggers import console_api


def _get(asset: str = "", method: str = "GET", headers: dict[str, str] | None = None) -> func.HttpResponse:
    return console_api.serve(
        func.HttpRequest(
            method,
            f"http://localhost/api/console/{asset}",
            headers=headers or {},
            route_params={"asset": asset},
            body=b"",
        )
    )


def _assert_secure(response: func.HttpResponse) -> None:
    assert response.headers["Content-Security-Policy"] == console_api.CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("name", sorted(console_api.ASSETS))
def test_every_asset_is_served_with_its_type_and_the_policy(name: str) -> None:
    response = _get(name)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == console_api.ASSETS[name][1]
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.get_body() == (console_api.ASSET_DIR / console_api.ASSETS[name][0]).read_bytes()
    _assert_secure(response)


def test_an_unchanged_asset_is_a_304_and_head_has_no_body() -> None:
    etag = _get("app.js").headers["ETag"]
    assert _get("app.js", headers={"If-None-Match": etag}).status_code == 304
    assert _get("app.js", headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
    assert _get("app.js", headers={"If-None-Match": '"other"'}).status_code == 200
    head = _get("style.css", method="HEAD")
    assert (head.status_code, head.get_body()) == (200, b"")


def test_other_methods_are_refused() -> None:
    response = _get("", method="POST")
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"


@given(st.text(max_size=40).filter(lambda name: name not in console_api.ASSETS))
def test_any_other_name_is_a_404_with_the_policy(name: str) -> None:
    response = _get(name)
    assert response.status_code == 404
    _assert_secure(response)


def test_the_files_use_no_inline_script_style_or_other_origin() -> None:
    """What the policy would block anyway, checked at the source so a regression is caught without a browser."""
    for file_name, _ in console_api.ASSETS.values():
        text = (console_api.ASSET_DIR / file_name).read_text(encoding="utf-8")
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), file_name
        assert not re.search(r"\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write", text), file_name
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), file_name
        assert "style=" not in text, file_name
        assert ".style." not in text, file_name
    assert set(p.name for p in console_api.ASSET_DIR.iterdir()) == {f for f, _ in console_api.ASSETS.values()}


def test_the_deployment_package_keeps_the_console() -> None:
    """No pattern of .funcignore (what `func publish` / azd leave out) drops a console file from the app."""
    root = console_api.ASSET_DIR.parents[2]
    patterns = [
        line.strip().rstrip("/")
        for line in (root / ".funcignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for file_name, _ in console_api.ASSETS.values():
        path = (console_api.ASSET_DIR / file_name).relative_to(root)
        prefixes = ["/".join(path.parts[: i + 1]) for i in range(len(path.parts))]
        for pattern in patterns:
            assert not any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(part, pattern)
                           for p, part in zip(prefixes, path.parts, strict=True)), (path, pattern)  # fmt: skip
