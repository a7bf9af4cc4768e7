// Renders an HTML report of `leadscore report --format html` in headless Chromium (Debian's
// package, /usr/bin/chromium) and checks that each chart is drawn: the svg has a size, and
// holds shapes with a size; that every rate chart draws a 95% interval for each bar, within
// the chart; that the histogram has y-axis ticks; that small groups are drawn apart; and,
// with a --by section, that its table has the corrected p-values and its significance
// markers (EXPECT_SIGNIFICANT=1: at least one).
// Usage: node check-report.mjs REPORT.html [SCREENSHOT.png]
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
  const bars = [...svg.querySelectorAll('rect.bar')];
  // a whisker is drawn when it lies inside the chart and has a width (or is a point)
  const whiskers = [...svg.querySelectorAll('g.ci')].filter((g) => {
    const b = g.getBoundingClientRect();
    return b.height > 0 && b.left >= box.left - 1 && b.right <= box.right + 1;
  });
  return {
    name: svg.dataset.chart, width: box.width, height: box.height, shapes: shapes.length,
    labels: labels.length, bars: bars.length, small: bars.filter((b) => b.classList.contains('small')).length,
    fewLabels: labels.filter((t) => t.textContent.endsWith('(few)')).length,
    whiskers: whiskers.length, yticks: svg.querySelectorAll('text.ytick').length,
  };
}));
const byTable = await page.evaluate(() => {
  const note = document.querySelector('[data-note="tests"]');
  if (!note) return null;
  let table = note.previousElementSibling;
  while (table && table.tagName !== 'TABLE') table = table.previousElementSibling;
  if (!table) return { header: [], marks: 0 };
  const header = [...table.querySelectorAll('th')].map((th) => th.textContent);
  const holm = header.indexOf('p (Holm)');
  const marks = holm < 0 ? 0 : [...table.querySelectorAll('tbody tr')]
    .filter((tr) => tr.children[holm]?.textContent.endsWith('*')).length;
  return { header, marks, note: note.textContent };
});
if (shot) await page.screenshot({ path: shot, fullPage: true });
await browser.close();

let passed = 0;
let failed = 0;
const check = (ok, what) => { if (ok) { passed++; } else { failed++; console.log(`FAIL ${what}`); } };
for (const want of ['funnel', 'by-source', 'scores', 'bands']) {
  const c = charts.find((x) => x.name === want);
  check(c !== undefined, `chart ${want} is in the page`);
  if (!c) continue;
  console.log(`${want}: ${Math.round(c.width)}x${Math.round(c.height)} px, ${c.shapes} shapes, ${c.labels} labels`);
  check(c.width >= 200 && c.height >= 100, `chart ${want} has a size`);
  check(c.shapes >= 3, `chart ${want} draws shapes`);
  check(c.labels >= 2, `chart ${want} has labels`);
}
for (const c of charts.filter((x) => ['by-source', 'by', 'bands'].includes(x.name))) {
  console.log(`${c.name}: ${c.bars} bars, ${c.whiskers} intervals, ${c.small} small`);
  check(c.bars > 0 && c.whiskers === c.bars, `chart ${c.name} draws an interval for each of its ${c.bars} bars`);
  check(c.small === c.fewLabels, `chart ${c.name} draws its ${c.fewLabels} small groups apart`);
}
const scores = charts.find((x) => x.name === 'scores');
check(scores && scores.yticks >= 2, `the score histogram has y-axis ticks (${scores?.yticks})`);
if (byTable) {
  console.log(`by table: ${byTable.header.join(' | ')}; ${byTable.marks} marked`);
  check(charts.some((x) => x.name === 'by'), 'the --by section has a chart');
  check(byTable.header.includes('p (Holm)'), 'the --by table has the corrected p-values');
  check(/Holm/.test(byTable.note), 'the note under the --by table says how p is corrected');
  if (process.env.EXPECT_SIGNIFICANT === '1') check(byTable.marks > 0, 'the --by table marks its significant groups');
}
check(requests.length === 0, `the page loads nothing from outside (${requests.join(', ')})`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
