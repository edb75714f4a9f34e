"""The approvals page and one-tap links in headless Chromium (Selenium + chromedriver), deciding
a held MCP call made with the official ``mcp`` SDK; links arrive through a signed webhook."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.approvals.test_e2e import Upstream, admin, config, mcp_client, pending_for, text
from tests.harness import Airlock, free_port

pytest.importorskip("selenium")
if not (shutil.which("chromium") and shutil.which("chromedriver")):
    pytest.skip("needs Debian chromium + chromium-driver (make setup installs them)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (NoSuchElementException, StaleElementReferenceException,  # noqa: E402
                                        WebDriverException)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SECRET = "hook-secret-for-tests"
IGNORED = (StaleElementReferenceException, NoSuchElementException)     # the page re-renders while we look


class Hooks:
    """A webhook receiver that checks the HMAC signature of every delivery."""

    def __init__(self):
        self.deliveries: list[dict] = []
        self.bad_signatures = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                ts = self.headers["x-airlock-timestamp"]
                want = "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
                if hmac.compare_digest(want, self.headers.get("x-airlock-signature", "")):
                    owner.deliveries.append(json.loads(body))
                    self.send_response(204)
                else:
                    owner.bad_signatures += 1
                    self.send_response(401)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def links_for(self, rid: str) -> dict:
        for d in self.deliveries:
            if d["event"] == "approval.requested" and d["approval"]["id"] == rid:
                return {(x["decision"], x["approver"]): x["url"] for x in d["links"]}
        return {}

    def stop(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("approvals-browser")
    up, hooks = Upstream(tmp), Hooks()
    cfg = config(up, channels={"hooks": {"type": "webhook", "url": f"http://127.0.0.1:{hooks.port}/airlock",
                                         "secret_env": "HOOK_SECRET"}})
    try:
        with Airlock(cfg, env={"HOOK_SECRET": SECRET}, workdir=tmp / "airlock") as a:
            yield a, up, hooks, a.mint("acme", subject="dev@example.com", agent="pytest")
    finally:
        hooks.stop()
        up.stop()


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=390,844"):                                    # a phone-sized screen
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")),
                           options=opts)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


def approve_in_page(drv, a: Airlock, rid: str, comment: str) -> str:
    drv.get(a.admin_url + "/approvals")
    wait = WebDriverWait(drv, 20, ignored_exceptions=IGNORED)
    token = drv.find_element(By.ID, "token")
    token.clear()
    token.send_keys(a.admin_token)
    who = drv.find_element(By.ID, "approver")
    who.clear()
    who.send_keys("alice@example.com")
    drv.find_element(By.ID, "save").click()
    selector = (By.CSS_SELECTOR, f'article[data-id="{rid}"]')
    for attempt in range(5):               # the list refreshes every 3 s: look the card up again if it was replaced
        try:
            card = wait.until(EC.presence_of_element_located(selector))
            assert "page me" in card.text and "dev@example.com" in card.text
            card.find_element(By.CSS_SELECTOR, "textarea.comment").send_keys(comment)   # focused: no refresh
            card.find_element(By.CSS_SELECTOR, "button.approve").click()
            break
        except StaleElementReferenceException:
            if attempt == 4:
                raise
    overflow = drv.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "the page must fit a phone screen"
    wait.until(lambda d: "approved" in d.find_element(By.ID, "msg").text)
    return drv.find_element(By.ID, "msg").text


async def test_page_approves_a_held_mcp_call(env, browser):
    a, up, hooks, token = env
    async with mcp_client(a, token) as c:
        call = asyncio.create_task(c.call_tool("echo", {"text": "page me", "justification": "need a human"}))
        item = await pending_for(a, "echo", {"text": "page me"})
        msg = await asyncio.to_thread(approve_in_page, browser, a, item["id"], "approved from my phone")
        assert item["id"] in msg
        result = await asyncio.wait_for(call, 20)
    assert not result.is_error and text(result) == "page me"
    shown = (await admin(a, "GET", f"/v1/approvals/{item['id']}")).json()
    assert shown["votes"][0]["approver"] == "alice@example.com"
    assert shown["votes"][0]["comment"] == "approved from my phone"


def open_link(drv, url: str) -> str:
    drv.get(url)
    return drv.find_element(By.TAG_NAME, "body").text


def confirm(drv, comment: str) -> str:
    drv.find_element(By.NAME, "comment").send_keys(comment)
    drv.find_element(By.CSS_SELECTOR, "form button").click()
    WebDriverWait(drv, 20, ignored_exceptions=IGNORED).until(lambda d: _heading(d) not in (None, "Approve this call?"))
    return drv.find_element(By.TAG_NAME, "body").text


def _heading(drv) -> str | None:
    """The page's h1, None while the form's POST navigates: Chromium reports the old document's node as stale,
    missing, or ("Node with given id does not belong to the document") as a generic WebDriverException."""
    try:
        return drv.find_element(By.TAG_NAME, "h1").text
    except WebDriverException:
        return None


async def test_one_tap_link_get_confirms_post_decides_once(env, browser):
    a, up, hooks, token = env
    async with mcp_client(a, token) as c:
        call = asyncio.create_task(c.call_tool("echo", {"text": "page me"}))
        item = await pending_for(a, "echo", {"text": "page me"})
        rid = item["id"]
        deadline = asyncio.get_running_loop().time() + 20
        while not hooks.links_for(rid) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        links = hooks.links_for(rid)
        assert hooks.bad_signatures == 0
        assert set(links) == {("approve", "alice@example.com"), ("deny", "alice@example.com"),
                              ("approve", "bob@example.com"), ("deny", "bob@example.com")}
        url = links[("approve", "bob@example.com")]
        page = await asyncio.to_thread(open_link, browser, url)          # a link preview / first tap: GET
        assert "Approve this call?" in page and "bob@example.com" in page and "page me" in page
        assert (await admin(a, "GET", f"/v1/approvals/{rid}")).json()["state"] == "pending"
        assert not call.done()
        done = await asyncio.to_thread(confirm, browser, "via link")      # the second tap: POST
        assert "request approved" in done
        result = await asyncio.wait_for(call, 20)
        assert text(result) == "page me"
        again = await asyncio.to_thread(open_link, browser, url)
        assert "Already approved" in again or "already used" in again
        tampered = await asyncio.to_thread(open_link, browser, url[:-3] + ("xyz" if not url.endswith("xyz") else "abc"))
        assert "not valid" in tampered
    assert (await admin(a, "GET", f"/v1/approvals/{rid}")).json()["votes"][0]["comment"] == "via link"
    deadline = asyncio.get_running_loop().time() + 10
    while not any(d["event"] == "approval.decided" and d["approval"]["id"] == rid for d in hooks.deliveries):
        assert asyncio.get_running_loop().time() < deadline, "no approval.decided webhook"
        await asyncio.sleep(0.05)
