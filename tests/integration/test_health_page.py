"""The health page as a person sees it, in headless Chromium against a real `serve`: sign in
with a token, see each destination's state in words (a failing one marked, with its error),
only one's own tenant with a tenant token, every tenant with a platform token."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from served import cli, free_port, process
from xavyo_siem.crypto import new_key_text

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (installed by the test command)."""
    assert CHROMIUM is not None, "chromium is missing: scripts/bootstrap --peers installs it"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def sign_in(page: Page, base: str, token: str) -> None:
    page.goto(f"{base}/ui/")
    assert page.url.endswith("/ui/login")  # not signed in yet: sent to the form
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/ui/")


def states(page: Page) -> dict[str, tuple[str, str, str]]:
    """Each row's destination name: (tenant, state, last error) as the page shows them."""
    shown = {}
    for row in page.query_selector_all("tbody tr"):
        cells = [cell.inner_text().strip() for cell in row.query_selector_all("td")]
        shown[cells[1]] = (cells[0], cells[2], cells[5])
    return shown


def test_the_page_shows_each_destination_state_and_marks_the_failing_one(
    tmp_path: Path, browser: Browser
) -> None:
    """A delivered file destination reads `ok`; a syslog destination whose receiver refuses
    reads `failing`, in the failing style, with the refusal as its last error; the workers
    line says none runs once the worker stopped; a tenant token sees only its tenant,
    a platform token both; a wrong token stays on the sign-in form with the reason."""
    env = {
        "XAVYO_SIEM_DATABASE_URL": f"sqlite:///{tmp_path}/store.db",
        "XAVYO_SIEM_SECRET_KEY": new_key_text(),
        "XAVYO_SIEM_EGRESS_ALLOW": "127.0.0.1/32",
    }
    mine, other = str(uuid4()), str(uuid4())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    for tenant, name, kind, endpoint in (
        (mine, "archive", "file", f"file://{tmp_path / 'archive.jsonl'}"),
        (mine, "soc", "syslog_tcp", f"tcp://127.0.0.1:{closed}"),
        (other, "theirs", "file", f"file://{tmp_path / 'theirs.jsonl'}"),
    ):
        added = cli(
            "destination", "add", "--tenant", tenant, "--name", name, "--type", kind,
            "--format", "json" if kind == "file" else "cef", "--endpoint", endpoint, env=env,
        )  # fmt: skip
        assert added.exit_code == 0, added.output
    ran = subprocess.run(
        [sys.executable, "-m", "xavyo_siem", "run", "--drain", "--timeout", "5"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 1, ran.stderr  # soc never caught up
    viewer = cli("tokens", "create", "--tenant", mine, "--role", "viewer", env=env).stdout.strip()
    platform = orjson.loads(
        cli("tokens", "create", "--platform", "--role", "viewer", "--json", env=env).stdout
    )["token"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with process("serve", "--port", str(port), env=env, port=port, log=tmp_path / "serve.log"):
        page = browser.new_page()
        sign_in(page, base, viewer)
        shown = states(page)
        assert set(shown) == {"archive", "soc"}
        assert shown["archive"][1] == "ok"
        assert shown["soc"][1] == "failing"
        assert "connection refused" in shown["soc"][2]
        failing = page.query_selector("tr:has-text('soc') .state")
        assert failing is not None
        assert "failing" in (failing.get_attribute("class") or "")
        background = failing.evaluate("e => getComputedStyle(e).backgroundColor")
        assert background == "rgb(176, 0, 32)"  # the failing style reached the browser
        assert "none running" in page.inner_text(".workers")  # the worker left at exit
        assert page.query_selector("input[name=tenant]") is None  # a tenant's token picks none
        page.click("text=Sign out")
        page.wait_for_url(f"{base}/ui/login")

        everyone = browser.new_page()
        sign_in(everyone, base, platform)
        assert set(states(everyone)) == {"archive", "soc", "theirs"}
        everyone.fill("input[name=tenant]", other)  # a platform token may narrow to a tenant
        everyone.click("text=Show")
        everyone.wait_for_url(f"{base}/ui/?tenant={other}")
        assert set(states(everyone)) == {"theirs"}

        wrong = browser.new_page()
        wrong.goto(f"{base}/ui/login")
        wrong.fill("input[name=token]", "xsk_not-a-token")
        wrong.click("button[type=submit]")
        assert "unknown or revoked" in wrong.inner_text("body")
        assert httpx.get(f"{base}/ui/", follow_redirects=False).status_code == 303
