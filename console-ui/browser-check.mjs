// Drives the console in a real headless Chromium (Debian's, through playwright-core) and prints
// what it saw as one JSON object; tests/integration/test_console_browser.py asserts on it.
//   node browser-check.mjs '{"url": "http://127.0.0.1:P/console", "out": "DIR", "token": null,
//                            "wrong_token": null, "chromium": "/usr/bin/chromium", "expand": "row text"}'
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const args = JSON.parse(process.argv[2]);
mkdirSync(args.out, { recursive: true });
const report = { console_errors: [], page_errors: [], request_urls: [], login: {}, views: {} };

const browser = await chromium.launch({
  executablePath: args.chromium || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});

// Pixels of the canvas close to a CSS colour: the series lines and points, not the axes.
async function seriesPixels(page, chartId, cssVar) {
  return page.evaluate(
    ([id, name]) => {
      const canvas = document.querySelector(`#${id} canvas`);
      if (!canvas) return -1;
      const hex = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
      const want = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
      const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
      let n = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3] > 200 && Math.abs(data[i] - want[0]) + Math.abs(data[i + 1] - want[1]) + Math.abs(data[i + 2] - want[2]) < 40) n += 1;
      }
      return n;
    },
    [chartId, cssVar]
  );
}

async function view(name, contextOptions) {
  const context = await browser.newContext(contextOptions);
  const page = await context.newPage();
  page.on("console", (msg) => {
    if (msg.type() === "error") report.console_errors.push(`${name}: ${msg.text()}`);
  });
  page.on("pageerror", (err) => report.page_errors.push(`${name}: ${err.message}`));
  page.on("request", (req) => report.request_urls.push(req.url()));
  await page.goto(args.url);

  if (args.token) {
    const login = {};
    login.form_shown = (await page.locator("#login-form").count()) === 1;
    login.api_status_without_cookie = await page.evaluate(async () => (await fetch("/console/api/overview")).status);
    if (args.wrong_token) {
      await page.fill("#token", args.wrong_token);
      await Promise.all([page.waitForNavigation(), page.click("#login-form button")]);
      login.wrong_token_refused = (await page.locator("#login-form").count()) === 1;
      login.wrong_token_message = await page.locator(".error").textContent().catch(() => null);
      await page.screenshot({ path: join(args.out, `login-${name}.png`) });
    }
    await page.fill("#token", args.token);
    await Promise.all([page.waitForURL(args.url), page.click("#login-form button")]);
    login.after_login_url = page.url();
    login.cookies = (await context.cookies()).map((c) => ({ name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite, value_is_token: c.value === args.token, value_has_token: c.value.includes(args.token) }));
    report.login[name] = login;
  }

  await page.waitForFunction(() => Number(document.body.dataset.refreshes || 0) >= 1, null, { timeout: 20000 });
  // The last 5 minutes, so the few seconds of the test's calls are wide enough to see.
  const before = Number(await page.evaluate(() => document.body.dataset.refreshes));
  await page.selectOption("#window", "300");
  await page.waitForFunction((n) => Number(document.body.dataset.refreshes) > n, before, { timeout: 20000 });
  const seen = await page.evaluate(() => {
    const text = (sel) => [...document.querySelectorAll(sel)].map((n) => n.textContent.trim());
    const points = {};
    for (const fig of document.querySelectorAll(".chart")) points[fig.id] = Number(fig.querySelector(".plot").dataset.points || 0);
    return {
      status: document.querySelector("#status").textContent,
      connections: [...document.querySelectorAll("#connections .card")].map((c) => ({ id: c.dataset.connection, health: c.dataset.health, text: c.textContent })),
      blocked: [...document.querySelectorAll("#blocked tbody tr")].map((r) => ({ reason: r.dataset.reason, text: r.textContent })),
      slow: text("#slow tbody tr"),
      history: text("#history tbody tr.row"),
      totals: Object.fromEntries([...document.querySelectorAll("#totals .stat")].map((s) => [s.dataset.key, s.querySelector("b").textContent])),
      chart_points: points,
      canvases: document.querySelectorAll(".chart canvas").length,
      width: document.documentElement.clientWidth,
      scroll_width: document.documentElement.scrollWidth,
    };
  });
  seen.series_pixels = {
    calls_ok: await seriesPixels(page, "chart-calls", "--s-ok"),
    latency_p95: await seriesPixels(page, "chart-latency", "--s-p95"),
    blocked: await seriesPixels(page, "chart-blocked", "--s-blocked"),
  };

  // The slow query's plan, through the page's own link.
  const link = page.locator("#slow button.explain").first();
  if ((await link.count()) > 0) {
    await link.click();
    await page.waitForSelector("#plan[data-state]", { timeout: 20000 });
    seen.plan_state = await page.getAttribute("#plan", "data-state");
    seen.plan_text = await page.locator("#plan-text").textContent();
  }
  // A history row, expanded to its full statement.
  const row = page.locator("#history tbody tr.row", { hasText: args.expand || "" }).first();
  if ((await row.count()) > 0) {
    await row.click();
    await page.waitForSelector("#history tr.detail pre, #history tr.detail p", { timeout: 10000 });
    seen.detail_text = await page.locator("#history tr.detail").first().textContent();
  }
  seen.html = await page.content();
  await page.screenshot({ path: join(args.out, `console-${name}.png`), fullPage: true });
  await page.evaluate(() => document.querySelector("#charts-section").scrollIntoView());
  await page.screenshot({ path: join(args.out, `console-${name}-charts.png`) });
  report.views[name] = seen;
  await context.close();
}

try {
  await view("desktop", { viewport: { width: 1280, height: 900 }, colorScheme: "light" });
  await view("phone", { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, colorScheme: "dark" });
} catch (err) {
  report.failure = String(err && err.stack ? err.stack : err);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report));
