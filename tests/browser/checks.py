"""Checks every page of the client passes: axe-core finds no serious or critical
accessibility violation, and nothing is wider than the window (no sideways scrolling,
which matters most on a 390 px phone)."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import IO

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

from tests.localrun import ROOT, LocalRun

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
_axe = Axe()


def accessible(page: Page) -> None:
    violations = _axe.run(page).response["violations"]
    bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in violations
           if v["impact"] in ("serious", "critical")]
    assert bad == [], bad


def fits_the_window(page: Page) -> None:
    overflow = page.evaluate("""() => {
      const width = document.documentElement.clientWidth;
      const wide = [...document.querySelectorAll('body *')]
        .filter((el) => el.getBoundingClientRect().right > width + 1
                        && getComputedStyle(el).position !== 'fixed'
                        && !el.closest('.bar-list'))
        .map((el) => el.outerHTML.slice(0, 80));
      return { scroll: document.documentElement.scrollWidth - width, wide };
    }""")
    assert overflow["scroll"] <= 0, overflow
    assert overflow["wide"] == [], overflow


class Hum:
    """`python -m local.peer`: a participant in its own process that joins through the
    API and hums a tone while on stage (what a speaker's microphone would send)."""

    def __init__(self, local: LocalRun, user_id: str, space_id: str, hz: int = 440) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local.peer", "--as", user_id, "--space", space_id,
             "--tone", str(hz), "--seconds", "300"],
            cwd=ROOT, env=local.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        seen = []
        for line in stdout:
            seen.append(line)
            if line.startswith("joined "):
                # Read on, so that a full pipe never stops the peer.
                threading.Thread(target=stdout.read, daemon=True).start()
                return
        raise AssertionError("the peer never joined:\n" + "".join(seen))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
