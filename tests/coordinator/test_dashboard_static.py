"""The web dashboard's static files: served at /ui/ with strict headers, complete, and shipped.

Every asset index.html names and every module the scripts import must load with the right
content type (a missing file would only show as a blank page in a browser); nothing may escape
the dashboard's folder; and the wheel must carry the files (package-data).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient
from tests.coordinator.api_harness import FakeControl, api_harness

from fl_coordinator.api_app import create_app
from fl_coordinator.dashboard_routes import CONTENT_SECURITY_POLICY
from fl_coordinator.registry import Registry
from fl_coordinator.settings import CoordinatorSettings

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "coordinator" / "src" / "fl_coordinator" / "dashboard"
CONTRACT_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".html": "text/html",
}
# import x from './a.js'; import './a.js'; export {x} from './a.js'; import('./a.js')
_IMPORT = re.compile(
    r"""(?:\bimport\s*(?:[\w*{}\s,$]+\s*from\s*)?|\bexport\s*[\w*{}\s,$]+\s*from\s*|\bimport\s*\(\s*)"""
    r"""['"]([^'"]+)['"]"""
)
_LINKED = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"'#]+)["']""")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with api_harness(tmp_path, FakeControl()) as harness:
        yield harness.client


@pytest.fixture
def secure_client(tmp_path: Path) -> Iterator[TestClient]:
    """The app as in production: no development mode, so the API needs a credential."""
    settings = CoordinatorSettings(state_dir=tmp_path, insecure=False)
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    registry.create_schema()
    app = create_app(registry, None, settings)  # type: ignore[arg-type]  # nothing runs
    try:
        with TestClient(app) as test_client:
            yield test_client
    finally:
        registry.close()


def _media_type(answer: object) -> str:
    return str(getattr(answer, "headers", {}).get("content-type", "")).split(";")[0].strip()


def _assert_strict_headers(answer: object) -> None:
    headers = getattr(answer, "headers", {})
    assert headers["content-security-policy"] == CONTRACT_CSP
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


def _crawl(client: TestClient) -> dict[str, str]:
    """Every URL index.html links to and every module reachable by import: {path: body}."""
    index = client.get("/ui/")
    assert index.status_code == 200
    base = "http://testserver/ui/"
    queue = [urljoin(base, ref) for ref in _LINKED.findall(index.text)]
    queue = [url for url in queue if urlsplit(url).path.startswith("/ui/")]
    seen: dict[str, str] = {}
    while queue:
        url = queue.pop()
        path = urlsplit(url).path
        if path in seen:
            continue
        answer = client.get(path)
        assert answer.status_code == 200, f"{path} is referenced but answers {answer.status_code}"
        suffix = Path(path).suffix
        assert _media_type(answer) == CONTENT_TYPES[suffix], path
        _assert_strict_headers(answer)
        seen[path] = answer.text
        if suffix == ".js":
            for spec in _IMPORT.findall(answer.text):
                assert spec.startswith("."), f"{path} imports {spec!r}: only relative modules"
                queue.append(urljoin(url, spec))
    return seen


def test_root_and_ui_without_slash_redirect_to_the_dashboard(client: TestClient) -> None:
    for path in ("/", "/ui"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 307
        assert answer.headers["location"] == "/ui/"


def test_index_is_served_with_strict_headers_and_no_cache(client: TestClient) -> None:
    answer = client.get("/ui/")
    assert answer.status_code == 200
    assert _media_type(answer) == "text/html"
    assert "charset=utf-8" in answer.headers["content-type"]
    _assert_strict_headers(answer)
    assert answer.headers["cache-control"] == "no-cache"
    assert CONTENT_SECURITY_POLICY == CONTRACT_CSP
    assert '<script type="module" src="assets/app.js">' in answer.text
    head = client.head("/ui/")
    assert head.status_code == 200 and _media_type(head) == "text/html"


def test_an_unchanged_file_revalidates_to_304(client: TestClient) -> None:
    first = client.get("/ui/assets/app.js")
    etag = first.headers["etag"]
    again = client.get("/ui/assets/app.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    assert client.get("/ui/assets/app.js", headers={"If-None-Match": '"other"'}).status_code == 200


def test_every_linked_asset_and_imported_module_loads_with_its_content_type(
    client: TestClient,
) -> None:
    served = _crawl(client)
    assert {"/ui/assets/app.js", "/ui/assets/style.css", "/ui/assets/favicon.svg"} <= set(served)
    # No module on disk is left out of the import graph (a dead file, or a typo in a path).
    on_disk = {
        "/ui/" + p.relative_to(DASHBOARD).as_posix() for p in (DASHBOARD / "assets").rglob("*.js")
    }
    assert on_disk == {p for p in served if p.endswith(".js")}


def test_the_dashboard_loads_nothing_from_elsewhere_and_no_inline_code(
    client: TestClient,
) -> None:
    served = _crawl(client)
    index = client.get("/ui/").text
    assert not re.search(r"<script(?![^>]*\bsrc=)", index), "inline <script> (CSP blocks it)"
    assert not re.search(r"\sstyle\s*=", index), "style attribute (CSP blocks it)"
    assert not re.search(r"\son[a-z]+\s*=", index), "inline event handler (CSP blocks it)"
    for path, body in served.items():
        without_svg_ns = body.replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"https?://", without_svg_ns), f"{path} names an external URL"
        assert "@import" not in body and "url(http" not in body, path
        if path.endswith(".js"):
            # API data only ever becomes text nodes: no HTML parsing, no eval.
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
                assert sink not in body, f"{path} uses {sink}"
            assert not re.search(r"\beval\s*\(|new Function\s*\(", body), path
            assert "setAttribute('style'" not in body, f"{path}: style attributes are blocked"


def test_the_scripts_carry_the_contracts_test_ids(client: TestClient) -> None:
    scripts = "\n".join(body for path, body in _crawl(client).items() if path.endswith(".js"))
    ids = [
        "login-submit",
        "login-error",
        "whoami",
        "logout",
        "filter-status",
        "filter-search",
        "device-table",
        "page-prev",
        "page-next",
        "page-info",
        "last-updated",
        "device-name",
        "device-state",
        "device-capabilities",
        "onnx-providers",
        "spark-cpu",
        "spark-memory",
        "spark-temp",
        "participation-table",
        "selection-table",
        "action-drain",
        "action-undrain",
        "action-revoke",
        "confirm-ok",
        "runs-table",
        "run-status",
        "run-progress",
        "accuracy-chart",
        "chart-point",
        "rounds-table",
        "download-checkpoint",
        "download-onnx",
        "action-stop-run",
        "models-table",
        "start-form",
        "preview",
        "preview-device",
        "preview-summary",
        "start-submit",
        "form-error",
    ]
    missing = [i for i in ids if f"'{i}'" not in scripts]
    assert missing == []
    # Built from a template string: count-<state> and nav-<page>, data-sort keys.
    for word in ("online", "stale", "offline", "drained", "revoked", "total"):
        assert f"'{word}'" in scripts
    assert "`count-${st}`" in scripts and "`nav-${key}`" in scripts
    for key in ("fleet", "runs", "models", "start"):
        assert f"item('{key}'" in scripts
    for key in ("name", "last_heartbeat", "arch", "speed", "registered"):
        assert f"sortable('{key}'" in scripts
    assert "'fl-token'" in scripts and "sessionStorage" in scripts


@pytest.mark.parametrize(
    "path",
    [
        "/ui/assets/nope.js",
        "/ui/assets/%2e%2e/index.html",
        "/ui/assets/%2E%2E/__init__.py",
        "/ui/assets/..%2f..%2fdashboard_routes.py",
        "/ui/assets/%2e%2e%2f%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/ui/assets/..%5c__init__.py",
        "/ui/assets/pages/%2e%2e/%2e%2e/index.html",
        "/ui/assets/.hidden.js",
        "/ui/assets/",
        "/ui/assets/pages",
        "/ui/assets//app.js",
        "/ui/assets/app.js%00.css",
        "/ui/assets/%2fetc%2fpasswd",
        "/ui/assets/" + "a/" * 10 + "x.js",
    ],
)
def test_traversal_and_unknown_files_are_404_json(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found"
    assert "root:" not in answer.text


def test_the_files_need_no_credential_but_the_api_still_does(secure_client: TestClient) -> None:
    assert secure_client.get("/ui/").status_code == 200
    assert secure_client.get("/ui/assets/app.js").status_code == 200
    assert secure_client.get("/api/v1/devices").status_code == 401


def test_the_dashboard_stays_out_of_the_api_spec(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith("/ui")]


def test_the_wheel_ships_every_dashboard_file(tmp_path: Path) -> None:
    # Built from a copy: an in-tree build would leave build/ in the checkout.
    source = tmp_path / "coordinator"
    shutil.copytree(
        REPO / "coordinator",
        source,
        ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"),
    )
    out = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            str(source),
            "-w",
            str(out),
        ],
        check=True,
        timeout=120,
    )
    (wheel,) = out.glob("fl_coordinator-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "fl_coordinator/" + p.relative_to(DASHBOARD.parent).as_posix()
        for p in DASHBOARD.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert "fl_coordinator/dashboard/index.html" in expected
    assert "fl_coordinator/dashboard/assets/pages/fleet.js" in expected
    assert expected <= names, sorted(expected - names)
