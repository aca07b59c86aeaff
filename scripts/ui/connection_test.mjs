// Drives Airflow 3.3's connection form in Debian's Chromium (playwright-core, no browser download):
// adds a Redivis connection the way docs/connection.md teaches it, checks the form (extra fields start
// empty, no "null" scheme, only typed extras saved), saves it, presses the
// list's Test button and waits for Airflow's success toast. Started by scripts/ui/connection_test.py,
// which passes everything in the environment:
//   UI_TEST_AIRFLOW_URL  the API server, e.g. http://127.0.0.1:PORT
//   UI_TEST_HOST, UI_TEST_PORT, UI_TEST_TOKEN  what to type in the form
//   UI_TEST_CONN_ID      the connection id
//   UI_TEST_SCREENSHOT_DIR  where form.png and tested.png go
//   UI_TEST_CHROMIUM     the browser binary (default /usr/bin/chromium)
// Prints one line "RESULT {json}" and exits 0 when the Test button showed success, 1 otherwise.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const env = process.env;
const base = env.UI_TEST_AIRFLOW_URL;
const connId = env.UI_TEST_CONN_ID || 'redivis_default';
const shots = env.UI_TEST_SCREENSHOT_DIR;
const result = { checks: [], requests: [] };
const check = (what, ok, detail) => {
  result.checks.push({ what, ok, detail });
  if (!ok) throw new Error(`${what}: ${detail}`);
};

const profile = mkdtempSync(join(tmpdir(), 'redivis-ui-chromium-'));
// A fresh profile (Playwright's persistent context is how to give --user-data-dir), and nothing that
// reaches beyond 127.0.0.1.
const context = await chromium.launchPersistentContext(profile, {
  executablePath: env.UI_TEST_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 1000 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let exitCode = 1;
try {
  const page = context.pages()[0] || (await context.newPage());
  page.on('response', async (r) => {
    const url = new URL(r.url());
    if (url.pathname.startsWith('/api/v2/connections') && r.request().method() === 'POST') {
      result.requests.push({
        path: url.pathname, status: r.status(), sent: JSON.parse(r.request().postData() || 'null'),
        answer: await r.json().catch(() => null),
      });
    }
  });

  await page.goto(`${base}/connections`);
  await page.getByRole('button', { name: 'Add Connection' }).click();
  await page.locator('input[name=connection_id]').fill(connId);
  await page.getByRole('combobox').first().fill('Redivis');
  await page.keyboard.press('Enter');

  // Standard fields: as the table in docs/connection.md says.
  await page.locator('input[name=host]').fill(env.UI_TEST_HOST);
  await page.locator('input[name=port]').fill(env.UI_TEST_PORT);
  await page.locator('input[name=password]').fill(env.UI_TEST_TOKEN);
  await page.screenshot({ path: join(shots, 'form.png') });

  // Extra fields: every one starts empty, and the scheme offers https and http, no "null".
  await page.getByText('Extra Fields', { exact: true }).click();
  for (const name of ['connect_timeout', 'read_timeout', 'max_attempts', 'max_retry_seconds']) {
    const value = await page.locator(`input[name=element_${name}]`).inputValue();
    check(`extra field ${name} starts empty`, value === '', JSON.stringify(value));
  }
  // One typed value, to see that it, and only it, is saved.
  await page.locator('input[name=element_connect_timeout]').fill('15');
  const schemeSelect = page.locator('input[name=element_scheme]').locator('xpath=..');
  await schemeSelect.click();
  const options = await page.getByRole('option').allInnerTexts();
  check('the scheme choices are https and http', JSON.stringify(options) === '["https","http"]',
    JSON.stringify(options));
  await page.getByText('Add Connection', { exact: true }).last().click();  // closes the menu
  await page.screenshot({ path: join(shots, 'extras.png') });

  await page.getByRole('button', { name: 'Save' }).click();
  const row = page.getByRole('row').filter({ hasText: connId });
  await row.waitFor();
  const saved = result.requests.find((r) => r.path === '/api/v2/connections');
  check('the connection was saved', saved && saved.status === 201, JSON.stringify(saved));
  const extra = JSON.parse(saved.sent.extra || '{}');
  const typed = Object.entries(extra).filter(([, v]) => v !== null);
  check('only the typed extra was saved, no default',
    JSON.stringify(typed) === '[["connect_timeout",15]]', saved.sent.extra);

  await page.setViewportSize({ width: 1280, height: 480 });
  await row.getByRole('button', { name: 'Test Connection' }).click();
  const toast = page.getByText(/Connected to http/);
  await toast.waitFor({ timeout: 60_000 });
  await page.waitForTimeout(1500); // the toast slides in
  const tested = result.requests.find((r) => r.path === '/api/v2/connections/test');
  check('the Test button got success', tested && tested.status === 200 && tested.answer.status === true,
    JSON.stringify(tested));
  result.message = tested.answer.message;
  await page.screenshot({ path: join(shots, 'tested.png') });
  exitCode = 0;
} catch (error) {
  result.error = String(error && error.stack ? error.stack.split('\n').slice(0, 6).join('\n') : error);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
for (const r of result.requests) if (r.sent && r.sent.password && r.sent.password !== '***') r.sent.password = '(typed)';
console.log(`RESULT ${JSON.stringify(result)}`);
process.exit(exitCode);
