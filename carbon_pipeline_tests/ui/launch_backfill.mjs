// Launches a partition-range backfill of every asset from the Dagster UI, in Debian's
// Chromium, and waits for it to finish. Usage:
//   node launch_backfill.mjs BASE_URL "[FROM...TO]" SCREENSHOT_DIR
// Prints {"backfillId", "status", "succeeded", "failed"} and exits 0 only if it succeeded.
import { chromium } from 'playwright-core';

const [base, range, shots] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
const shot = (name) => page.screenshot({ path: `${shots}/${name}.png` });
let result = { status: 'not launched' };
try {
  // The UI's "Join the Dagster community" dialog may open at any moment (late on a busy
  // machine) and cover what we click: dismiss it whenever it shows.
  await page.addLocatorHandler(page.getByRole('button', { name: 'Skip' }), async (skip) => {
    await skip.click();
  });
  await page.goto(`${base}/locations/carbon_pipeline.definitions/jobs/hourly_carbon_job`, { waitUntil: 'networkidle' });
  await shot('1-job');
  await page.getByRole('button', { name: /Materialize all/ }).click();
  // Newer UIs fold the partition range behind this link; older ones show it at once.
  await page.getByText('Show all partitions').click({ timeout: 10000 }).catch(() => {});
  const selection = page.getByPlaceholder(/^ex: /);
  await selection.fill(range);
  await selection.press('Enter');
  await shot('2-launch-dialog');
  await page.getByRole('button', { name: 'Launch backfill' }).click();
  const toast = page.getByText(/Created backfill \w+/);
  await toast.waitFor({ timeout: 30000 });
  const backfillId = (await toast.innerText()).match(/Created backfill (\w+)/)[1];
  await shot('3-launched');
  result = { backfillId, status: 'launched' };
  const deadline = Date.now() + 300000;
  while (Date.now() < deadline) {
    await page.goto(`${base}/runs/b/${backfillId}`, { waitUntil: 'networkidle' });
    const text = await page.locator('body').innerText();
    const status = (text.match(/Status\s*\n\s*([^\n]+)/) || [])[1] || 'unknown';
    const counts = (text.match(/hourly_carbon_job\s*\n[^\n]*\n\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/) || []).slice(1).map(Number);
    result = { backfillId, status, targeted: counts[0], inProgress: counts[1], succeeded: counts[2], failed: counts[3] };
    // A page still loading shows no status yet: only a final one ends the wait.
    if (/^(completed|succeeded|failed|canceled|cancelled|completed with failures)/i.test(status)) break;
    await page.waitForTimeout(3000);
  }
  await shot('4-backfill');
} finally {
  console.log(JSON.stringify(result));
  await browser.close();
}
process.exit(/^(completed|succeeded)$/i.test(result.status) && result.failed === 0 ? 0 : 1);
