// Renders an HTML report of `leadscore report --format html` in headless Chromium (Debian's
// package, /usr/bin/chromium) and checks that each chart is drawn: the svg has a size, and
// holds shapes with a size. Usage: node check-report.mjs REPORT.html [SCREENSHOT.png]
import { chromium } from 'playwright-core';
import path from 'node:path';

const [report, shot] = process.argv.slice(2);
if (!report) {
  console.error('usage: node check-report.mjs REPORT.html [SCREENSHOT.png]');
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
const requests = [];
page.on('request', (r) => { if (!r.url().startsWith('file:')) requests.push(r.url()); });
await page.goto('file://' + path.resolve(report));
const charts = await page.evaluate(() => [...document.querySelectorAll('svg[data-chart]')].map((svg) => {
  const box = svg.getBoundingClientRect();
  const shapes = [...svg.querySelectorAll('rect, path, line, circle, polyline, polygon')]
    .filter((s) => { const b = s.getBoundingClientRect(); return b.width > 0 || b.height > 0; });
  const labels = [...svg.querySelectorAll('text')].filter((t) => t.textContent.trim() !== '');
  return { name: svg.dataset.chart, width: box.width, height: box.height, shapes: shapes.length, labels: labels.length };
}));
if (shot) await page.screenshot({ path: shot, fullPage: true });
await browser.close();

let passed = 0;
let failed = 0;
const check = (ok, what) => { if (ok) { passed++; } else { failed++; console.log(`FAIL ${what}`); } };
for (const want of ['funnel', 'by-source', 'scores']) {
  const c = charts.find((x) => x.name === want);
  check(c !== undefined, `chart ${want} is in the page`);
  if (!c) continue;
  console.log(`${want}: ${Math.round(c.width)}x${Math.round(c.height)} px, ${c.shapes} shapes, ${c.labels} labels`);
  check(c.width >= 200 && c.height >= 100, `chart ${want} has a size`);
  check(c.shapes >= 3, `chart ${want} draws shapes`);
  check(c.labels >= 2, `chart ${want} has labels`);
}
check(requests.length === 0, `the page loads nothing from outside (${requests.join(', ')})`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
