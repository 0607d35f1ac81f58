"""The review pages in a real browser: Debian's chromium, driven by Playwright (no download).

One demo call (the founder interview: a filler, a barge-in, three tools) through the real bridge
with recordings on; then, while the bridge still serves, Chromium logs in with the operator
token, opens the list and the call's page, and checks what an operator would look at: both
waveforms drawn, every lane with its events, a transcript line seeking the audio. The same
page, self-contained (the demo's review.html), opens from a file:// URL and draws too.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from telephony_bridge.demo import DEMO_MARKET_DELAY_S, demo_scenario, write_call_files
from telephony_bridge.review.model import LANES
from telephony_bridge.testing import CallerScript
from telephony_bridge.testing.local_call import founder_turns, place_local_call

OPERATOR = "operator-token-for-review-0123456789"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

import playwright.async_api as playwright_api  # noqa: E402 - the test extra installs it; CI must run this


async def _canvas_ink(page: Any, selector: str) -> int:
    """How many pixels of the canvas are drawn in the channel's colour (not blank, not the axis)."""
    return await page.eval_on_selector(selector, """c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && (d[i] < 200 || d[i + 2] < 200)) n++;
        return n; }""")


async def _check_view(page: Any, shots: Path, name: str) -> dict[str, Any]:
    await page.wait_for_selector(".lane[data-lane=latency]")
    left = await _canvas_ink(page, "#wave-left")
    right = await _canvas_ink(page, "#wave-right")
    lanes = await page.eval_on_selector_all(
        ".lane", "ls => Object.fromEntries(ls.map(l => [l.dataset.lane, l.querySelectorAll('.ev').length]))")
    # Click the third transcript line: the audio seeks to its time.
    line = page.locator(".line").nth(2)
    want = float(await line.get_attribute("data-t"))
    await line.click()
    await page.wait_for_function("t => Math.abs(document.getElementById('audio').currentTime - t) < 0.3", arg=want)
    current = await page.evaluate("document.getElementById('audio').currentTime")
    duration = await page.evaluate("document.getElementById('audio').duration")
    await page.evaluate("document.getElementById('audio').pause()")
    await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    return {"left": left, "right": right, "lanes": lanes, "want": want, "current": current, "duration": duration}


def test_review_pages_in_chromium(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (apt-get install chromium; .ci/run does it)")
    folder = tmp_path / "rec"
    seen: dict[str, Any] = {}

    async def in_browser(bridge: Any, result: Any) -> None:
        base = bridge.settings.public_url
        sid = result.call_sid
        async with httpx.AsyncClient(base_url=base) as http:
            # No cookie: the pages send the browser to the login form; the recording says 401.
            r = await http.get("/calls")
            assert r.status_code == 303 and r.headers["location"].startswith("/calls/login")
            r = await http.get(f"/calls/{sid}/view")
            assert r.status_code == 303 and OPERATOR not in r.text
            assert (await http.get(f"/calls/{sid}/recording.wav")).status_code == 401
            # A wrong token: refused, no cookie.
            r = await http.post("/calls/login", data={"token": "not-the-token", "next": "/calls"})
            assert r.status_code == 401 and "set-cookie" not in r.headers
            # A forged cookie: refused.
        async with httpx.AsyncClient(base_url=base, cookies={"tb_review": "9999999999.bogus"}) as forged:
            r = await forged.get("/calls")
            assert r.status_code == 303
        async with httpx.AsyncClient(base_url=base) as http:
            # The JSON record is where it was, with its bearer token.
            assert (await http.get(f"/calls/{sid}")).status_code == 401
            r = await http.get(f"/calls/{sid}", headers={"authorization": f"Bearer {OPERATOR}"})
            assert r.status_code == 200 and r.json()["call_sid"] == sid
        async with playwright_api.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 900})
                await page.goto(f"{base}/calls/{sid}/view")
                assert "/calls/login" in page.url
                await page.fill("#token", OPERATOR)
                await page.click("button[type=submit]")
                await page.wait_for_url(f"{base}/calls/{sid}/view")
                cookies = {c["name"]: c for c in await page.context.cookies()}
                cookie = cookies["tb_review"]
                seen["cookie"] = (cookie["httpOnly"], cookie["sameSite"], cookie["path"], cookie["expires"] > 0)
                seen["served"] = await _check_view(page, tmp_path, "review-served")
                await page.goto(f"{base}/calls")
                seen["list"] = await page.locator(f"tr[data-call='{sid}'] td").all_inner_texts()
                await page.screenshot(path=str(tmp_path / "calls-list.png"), full_page=True)
                # The demo's page: one file, opened from disk.
                core = await bridge.finished_call(sid)
                out = tmp_path / "demo-output"
                (out / "recordings").mkdir(parents=True)
                for f in folder.glob(f"{sid}.*"):
                    shutil.copyfile(f, out / "recordings" / f.name)
                write_call_files(out, sid, core)
                page2 = await browser.new_page(viewport={"width": 1400, "height": 900})
                await page2.goto((out / "review.html").as_uri())
                seen["standalone"] = await _check_view(page2, tmp_path, "review-standalone")
            finally:
                await browser.close()

    script = CallerScript.from_founder_turns(founder_turns(), barge_in=True)
    call = asyncio.run(place_local_call(
        script, demo_scenario(), timeout=240.0, while_up=in_browser, operator_token=OPERATOR,
        recordings_dir=str(folder), silence_duration_ms=1200,
        demo_tool_delays_s={"lookup_market": DEMO_MARKET_DELAY_S}))
    assert call.core.counters["barge_ins"] >= 1 and call.core.counters["fillers"] >= 1
    assert seen["cookie"] == (True, "Strict", "/calls", True)
    for name in ("served", "standalone"):
        v = seen[name]
        assert v["left"] > 500 and v["right"] > 500, v  # both waveforms drawn
        assert set(v["lanes"]) == {n for n, _ in LANES}
        assert all(count > 0 for count in v["lanes"].values()), v["lanes"]
        assert abs(v["current"] - v["want"]) < 0.3 and v["want"] > 1.0
        assert v["duration"] > 30
    row = seen["list"]
    assert any("end_call" in cell for cell in row) and any("lookup_market" in cell for cell in row)
    assert (tmp_path / "review-served.png").stat().st_size > 10_000
