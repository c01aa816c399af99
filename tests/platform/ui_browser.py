#!/usr/bin/env python3
"""tests/platform/ui_browser.py — the web UI in headless Chromium (run by
test_ui.sh, which starts the server and the runs and passes them in UI_*
variables). Prints "ok: ..." or "FAIL: ..." per check, then "browser checks
done". With UI_SCREENSHOTS=DIR, saves a PNG of each page there (docs/img/)."""
import json
import os
import signal
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

E = os.environ
URL, TOKEN = E["UI_URL"], E["UI_TOKEN"]
A, B, C = E["UI_A"], E["UI_B"], E["UI_C"]
XSS = E["UI_XSS"]
SHOTS = E.get("UI_SCREENSHOTS", "")
fails = 0


def ok(what):
    print("ok: " + what, flush=True)


def fail(what):
    global fails
    fails += 1
    print("FAIL: " + what, flush=True)


def check(cond, what, detail=""):
    if cond:
        ok(what)
    else:
        fail(what + (": " + detail if detail else ""))


opts = webdriver.ChromeOptions()
opts.binary_location = E["UI_CHROMIUM"]
for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,860",
          "--user-data-dir=" + E["UI_PROFILE"], "--no-first-run", "--disable-extensions"):
    opts.add_argument(a)
d = webdriver.Chrome(service=Service(E["UI_CHROMEDRIVER"], log_path=E["UI_PROFILE"] + ".log"), options=opts)
d.set_page_load_timeout(30)


def wait(cond, what, timeout=10):
    try:
        return WebDriverWait(d, timeout, poll_frequency=0.1).until(lambda _: cond())
    except TimeoutException:
        fail(what + " (not within %d s)" % timeout)
        return None


def css(sel):
    return d.find_elements(By.CSS_SELECTOR, sel)


def text(sel):
    return d.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", sel)


def shot(name):
    if SHOTS:
        d.save_screenshot(os.path.join(SHOTS, name + ".png"))


def no_alert(what):
    try:
        d.switch_to.alert.dismiss()
        fail(what + ": a script ran (an alert opened)")
    except NoAlertPresentException:
        ok(what)


def click(sel):
    """clicks the element now in the page (one script: the page may redraw between two WebDriver calls)"""
    if not d.execute_script("const e = document.querySelector(arguments[0]); if (!e) return false; e.click(); return true;", sel):
        fail("nothing to click at " + sel)


def go(hash_):
    d.execute_script("location.hash = arguments[0]", hash_)


def table_rows(sel):
    # read in one script: the page may redraw between two WebDriver calls
    return d.execute_script(
        "return [...document.querySelectorAll(arguments[0] + ' tbody tr')].map((tr) => [...tr.querySelectorAll('td')].map((td) => td.innerText))", sel)


def run_rows():
    """{run id: {"cells": [...], "loss": text, "status": text}} of the runs table"""
    return d.execute_script("""
      const o = {};
      for (const tr of document.querySelectorAll('#runs tbody tr')) {
        const m = tr.querySelector("td[data-metric='loss']"), s = tr.querySelector('[data-status]');
        o[tr.dataset.run] = {cells: [...tr.querySelectorAll('td')].map((td) => td.innerText), loss: m ? m.innerText : null,
                             status: s ? s.innerText : null};
      }
      return o;""")


def order():
    return d.execute_script("return [...document.querySelectorAll('#runs tbody tr')].map((tr) => tr.dataset.run)")


def attr(sel, name):
    return d.execute_script("const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null", sel, name)


try:
    # --- login: a wrong token refused, then the right one ---------------------------------
    d.get(URL + "/")
    wait(lambda: css("#login-form"), "the login page shows without a token")
    css("#token")[0].send_keys("kst_" + "0" * 64)
    click("#signin")
    wait(lambda: "refused this token" in text("#login-message"), "a wrong token is refused with a clear message")
    check("unknown or revoked token" in text("#login-message"), "the message says why (the server's text)", text("#login-message"))
    shot("login")
    check(d.execute_script("return sessionStorage.getItem('kusari.token')") is None, "a refused token is not kept")
    css("#token")[0].clear()
    css("#token")[0].send_keys(TOKEN)
    click("#signin")
    wait(lambda: css("#experiments"), "signed in: the experiments page")
    check(d.execute_script("return sessionStorage.getItem('kusari.token')") == TOKEN, "the token is kept in sessionStorage")
    check(TOKEN not in d.current_url, "the token is not in the URL")
    rows = {r[0]: r for r in table_rows("#experiments")}
    check("ui" in rows and rows["ui"][1] == "3", "experiment 'ui' lists its 3 runs", repr(rows.get("ui")))
    shot("experiments")

    # --- runs table: values, sorting, columns in the URL, filter -----------------------------
    go("#/runs?experiment=ui&cols=loss")
    wait(lambda: len(css("#runs tbody tr")) == 3, "the runs table lists the 3 runs")

    rr = run_rows()
    vals = {k: v["loss"] for k, v in rr.items()}
    check(vals.get(A) == "0.25" and vals.get(B) == "0.4", "the latest loss of each run as a column (0.25, 0.4)", repr(vals))
    check(rr.get(A, {}).get("cells", [""] * 6)[5] == "0.9 0.5 0.25", "the run's arguments are shown", repr(rr.get(A)))
    status = {k: v["status"] for k, v in rr.items()}
    check(status.get(A) == "Completed" and status.get(C) in ("Queued", "Preparing", "Running"), "statuses", repr(status))
    check(XSS in " ".join(rr.get(B, {}).get("cells", [])), "a tag holding markup is shown as text in the runs table")
    check(not css("#runs img"), "no <img> element was made from the tag")
    no_alert("the tag's onerror script did not run (runs table)")

    click("th[data-sort='metrics.loss']")
    wait(lambda: attr("#runs", "data-order") == "metrics.loss desc", "the table redrawn sorted by loss, descending")
    check(order() == [C, B, A], "sorted by loss, descending: the active run (largest loss), B, A", repr(order()))
    click("th[data-sort='metrics.loss']")
    wait(lambda: attr("#runs", "data-order") == "metrics.loss asc", "the table redrawn sorted by loss, ascending")
    check(order() == [A, B, C], "sorted by loss, ascending: A, B, C", repr(order()))
    check("cols=loss" in d.current_url, "the chosen columns are kept in the URL", d.current_url)
    d.refresh()
    wait(lambda: attr("#runs", "data-order") == "metrics.loss asc" and css("td[data-metric='loss']"), "after a reload: the same columns and order")
    check(order() == [A, B, C], "after a reload: A, B, C", repr(order()))

    # params as columns (A: lr=0.05, B: lr=0.2, C none), chosen like metric
    # columns, kept in the URL, sortable
    wait(lambda: css("#param-chips [data-param='lr']"), "param 'lr' offered as a column")
    click("#param-chips [data-param='lr']")
    wait(lambda: css("td[data-param='lr']"), "the lr column shows after choosing it")
    pv = d.execute_script("const o = {}; for (const tr of document.querySelectorAll('#runs tbody tr')) {"
                          " const c = tr.querySelector(\"td[data-param='lr']\"); o[tr.dataset.run] = c ? c.innerText : null; } return o;")
    check(pv.get(A) == "0.05" and pv.get(B) == "0.2" and pv.get(C) == "", "each run's lr in its column (0.05, 0.2, none)", repr(pv))
    check("pcols=lr" in d.current_url and "cols=loss" in d.current_url, "the param column is kept in the URL with the metric column", d.current_url)
    click("th[data-sort='params.lr']")
    wait(lambda: attr("#runs", "data-order") == "params.lr desc", "the table redrawn sorted by lr, descending")
    o = order()
    check(B in o and A in o and o.index(B) < o.index(A), "sorted by lr, descending: B (0.2) before A (0.05)", repr(o))
    click("th[data-sort='params.lr']")
    wait(lambda: attr("#runs", "data-order") == "params.lr asc", "the table redrawn sorted by lr, ascending")
    o = order()
    check(B in o and A in o and o.index(A) < o.index(B), "sorted by lr, ascending: A before B", repr(o))
    d.refresh()
    wait(lambda: attr("#runs", "data-order") == "params.lr asc" and css("td[data-param='lr']"), "after a reload: the lr column and order kept")
    shot("runs")

    # pages of 1 run: the server's opaque next_page_token leads forward, the
    # browser's history back; the numbers shown follow
    go("#/runs?experiment=ui&order=id%20asc&size=1")
    wait(lambda: len(css("#runs tbody tr")) == 1 and "runs 1–1" in text("#main"), "page 1 of 1 run")
    first = order()
    click("#next")
    wait(lambda: "runs 2–2" in text("#main") and len(css("#runs tbody tr")) == 1, "Next: page 2 (runs 2–2)")
    check(order() != first, "page 2 shows another run", repr((first, order())))
    check("server refused" not in text("#main"), "the page token was accepted")
    click("#next")
    wait(lambda: "runs 3–3" in text("#main"), "Next: page 3 (runs 3–3)")
    check(attr("#next", "disabled") is not None, "no Next after the last run")
    click("#prev")
    wait(lambda: "runs 2–2" in text("#main"), "Previous: back to page 2")
    go("#/runs?experiment=ui&cols=loss&order=metrics.loss%20asc")
    wait(lambda: len(css("#runs tbody tr")) == 3, "back to the whole table")
    css("#filter")[0].send_keys(E["UI_FILTER"])
    click("#filter-form button[type=submit]")
    fbody = json.load(open(E["UI_FILTER_BODY"]))
    if E["UI_FILTER_CODE"] == "400":
        msg = fbody["error"]["message"]
        wait(lambda: msg in text("#main"), "the filter's refusal shows the server's text")
    else:
        want = [r["id"] for r in fbody["runs"]]
        wait(lambda: sorted(order()) == sorted(want), "the filter selects what the API selects")
    check("filter=" in d.current_url, "the filter is kept in the URL")

    # --- run page: the chart gains points while the run is active ------------------------------
    d.execute_script("performance.setResourceTimingBufferSize(5000); performance.clearResourceTimings()")
    go("#/run/" + C)
    card = "div[data-chart='loss']"
    wait(lambda: int(attr(card, "data-points") or 0) > 0, "the live run's loss chart has points", 20)
    n1 = int(attr(card, "data-points") or 0)
    wait(lambda: int(attr(card, "data-points") or 0) > n1, "the chart gains points while the run is active", 15)
    print("   (the chart went from %d to %s points)" % (n1, attr(card, "data-points")))
    wait(lambda: "tick" in text("#log"), "the log tail shows the run's lines")
    t1 = text("#log").count("tick")
    wait(lambda: text("#log").count("tick") > t1, "the log tail grows while the run is active", 15)
    polls = d.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)"
                             ".filter((u) => u.includes('/wait?') || /[?&]wait=/.test(u) || u.includes('/events'))")
    check(not [u for u in polls if "/events" not in u], "live by one event stream: no wait or log long polls", repr(polls[:5]))
    check(text("#log").count("tick 1\n") == 1, "each log line once (the tail read, then the stream)", text("#log")[:200])
    check(len(css(card + " canvas")) == 1, "one chart per metric, drawn on a canvas")
    check("null" not in text("#main"), "no stray 'null' on the run page")
    check("Running" in text("#timeline") and "Queued" in text("#timeline"), "the lifecycle timeline")
    shot("run")

    # --- run page with markup in a tag; its files and model ---------------------------------------
    go("#/run/" + A)
    wait(lambda: css("#files") and text("#run-id") == A, "run A's page with its files")
    check("lr" in text("#params") and "0.05" in text("#params"), "run A's params (run submit --param lr=0.05)", text("#params") if css("#params") else "no #params table")
    check("outputs/model.txt" in text("#files"), "the run's files are listed")
    tl = d.execute_script("return [...document.querySelectorAll('#timeline .step')].map((e) => [e.dataset.step, e.querySelector('.t').innerText])")
    check([x[0] for x in tl] == ["Queued", "Preparing", "Running", "Finalizing", "Completed"],
          "the timeline's steps: Queued, Preparing, Running, Finalizing, Completed", repr(tl))
    times = [x[1] for x in tl]
    check(all(t and t != "\u2014" for t in times) and times == sorted(times), "each step with the time the run entered it, in order", repr(tl))
    check("uimodel v1" in text("#main"), "the model registered from the run is listed")
    wait(lambda: attr("div[data-chart='loss']", "data-points") == "3", "run A's loss chart holds its 3 points")
    go("#/run/" + B)
    wait(lambda: text("#run-id") == B and css("#tags"), "run B's page")
    check(XSS in text("#tags"), "the tag's markup shows as text on the run page", text("#tags"))
    check(not css("#tags img") and not css("#main img"), "no element was made from the tag")
    no_alert("the tag's onerror script did not run (run page)")

    # zoom: B's 5,000-point series is downsampled whole; zooming in asks the
    # server for the step window only, at full resolution once it fits
    big = "div[data-chart='big']"
    wait(lambda: attr(big, "data-total") == "5000", "run B's 5,000-point chart")
    check(attr(big, "data-downsampled") == "true" and int(attr(big, "data-points") or 0) <= 1000,
          "the whole series is downsampled (at most 1,000 points)", attr(big, "data-points") or "")
    d.execute_script("performance.clearResourceTimings()")
    for k in range(3):
        before = attr(big, "data-to")
        click(big + " button.zoom-in")
        wait(lambda: attr(big, "data-to") not in ("", before), "zoom in %d: a narrower step window" % (k + 1))
    fr, to, pts, tot = (attr(big, a) for a in ("data-from", "data-to", "data-points", "data-total"))
    check(fr and to and 0 < int(to) - int(fr) < 1000, "three zooms: a window under 1,000 steps", "%s-%s" % (fr, to))
    check(attr(big, "data-downsampled") == "false" and pts == tot and int(tot or 0) == int(to) - int(fr) + 1,
          "the window at full resolution: every step in it", "points %s of %s, steps %s-%s" % (pts, tot, fr, to))
    urls = d.execute_script("return performance.getEntriesByType('resource').map((e) => e.name).filter((u) => u.includes('/metrics/big'))")
    check(any("from_step=%s&to_step=%s" % (fr, to) in u for u in urls), "the browser fetched that step window (from_step, to_step)", repr(urls[-3:]))
    shot("zoom")
    click(big + " button.zoom-reset")
    wait(lambda: attr(big, "data-from") == "" and attr(big, "data-downsampled") == "true", "'all' shows the whole series again")

    # --- compare ------------------------------------------------------------------------------------
    go("#/runs?experiment=ui&cols=loss")
    wait(lambda: len(css("#runs tbody tr")) == 3, "the runs table again")
    for r in (A, B):
        click("input[type=checkbox][data-run='%s']" % r)
    click("#compare")
    wait(lambda: css("#compare-table"), "the compare page")
    head = text("#compare-table thead")
    check(A in head and B in head, "compare shows both runs", head)
    wait(lambda: attr("div[data-chart='loss']", "data-points") == "6",
         "compare overlays both loss curves (3 + 3 points)")
    diff = d.execute_script("""const o = {};
      for (const tr of document.querySelectorAll('#compare-table tbody tr')) o[tr.dataset.row] = [...tr.querySelectorAll('td')].map((td) => td.className);
      return o;""")
    check(diff.get("arguments") == ["diff", "diff"] and diff.get("final loss") == ["diff", "diff"],
          "differing arguments and final losses are marked", repr(diff))
    check(diff.get("status") == ["", ""], "equal cells (status) are not marked", repr(diff.get("status")))
    shot("compare")

    # --- sweep: the canceled child with its rule ------------------------------------------------------
    canceled_id, rule = E["UI_CANCELED"].split("\t", 1)
    go("#/sweep/" + E["UI_SWEEP"])
    wait(lambda: css("#sweep-children tbody tr"), "the sweep page lists its children")
    rows = d.execute_script("""const o = {};
      for (const tr of document.querySelectorAll('#sweep-children tbody tr'))
        o[tr.dataset.run] = {text: tr.innerText, cls: tr.className, decision: tr.querySelector('td.decision').innerText};
      return o;""")
    check(len(rows) == 2, "both children", repr(list(rows)))
    cr = rows.get(canceled_id, {"text": "", "decision": "", "cls": ""})
    check("Canceled" in cr["text"], "the early-terminated child is Canceled")
    check(rule in cr["decision"], "its decision shows the policy's rule and numbers", "%r not in %r" % (rule, cr["decision"]))
    best = [r for r, v in rows.items() if "best" in v["cls"]]
    check(len(best) == 1 and best[0] != canceled_id, "the best child is marked", repr(best))
    sp = text("#sweep-space")
    check("--curve" in sp and "b1" in sp and "b2" in sp, "the sweep's search space (--curve: choice b1, b2)", sp)
    po = text("#sweep-policy")
    check("grid" in po and "bandit" in po and "slack_factor 0.1" in po and "acc (maximize)" in po,
          "the sampling, primary metric and policy with its settings", po)
    check(attr("#parallel", "data-axes") == "2" and attr("#parallel", "data-lines") == "2",
          "parallel coordinates: axes --curve and acc, one line per child", "%s axes, %s lines" % (attr("#parallel", "data-axes"), attr("#parallel", "data-lines")))
    inked = d.execute_script("const c = document.getElementById('parallel'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                             " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n;")
    check(inked > 500, "the parallel-coordinates canvas is drawn", "%d inked pixels" % inked)
    wait(lambda: attr("#sweep-chart div[data-chart='acc']", "data-points") not in (None, "0"), "the children's acc curves in one chart")
    check("null" not in text("#main"), "no stray 'null' on the page")
    shot("sweep")

    # --- models -----------------------------------------------------------------------------------------
    go("#/models")
    wait(lambda: css("#models tbody tr"), "the models page")
    check("uimodel" in text("#models") and A in text("#models"), "the model with its source run")
    shot("models")

    # --- services: state, scoring URI, counters, the key never shown ---------------------------------
    go("#/services")
    svc = "#services tr[data-service='%s']" % E["UI_SERVICE"]
    wait(lambda: css(svc), "the services page lists the deployed service")
    row = text(svc)
    check("Running" in row and E["UI_SERVICE_URI"] in row, "its state and scoring URI", row)
    check(attr(svc + " td[data-requests]", "data-requests") == "3", "its request counter (2 scored, 1 refused)", attr(svc + " td[data-requests]", "data-requests") or "")
    check("200: 2" in row and "401: 1" in row and " ms" in row, "requests by code and the latency", row)
    check("required" in row, "the page says scoring needs a key")
    key = E["UI_SERVICE_KEY"]
    check(key and key not in d.page_source and key[:12] not in d.page_source and key[-12:] not in d.page_source,
          "the key, nor part of it, is anywhere in the page")
    shot("services")

    # --- the server gone: a clear message ---------------------------------------------------------------
    os.kill(int(E["UI_SERVER_PID"]), signal.SIGTERM)
    time.sleep(1.5)
    go("#/experiments")
    wait(lambda: "Cannot reach the kusari server" in text("#banner"), "an unreachable server gives a clear message")
    shot("unreachable")
    no_alert("no script from the data ran at all")
finally:
    d.quit()
print("browser checks done (%d failed)" % fails, flush=True)
sys.exit(1 if fails else 0)
