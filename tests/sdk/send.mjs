// Sends one lead's identify, page and track calls through a real analytics library, as a
// product team's Node.js backend would:
// `node send.mjs segment|rudderstack HOST WRITE_KEY USER_ID [plain]`.
// The library batches the three calls and posts them to HOST/v1/batch with the write key as
// Basic auth user name (RudderStack's gzipped unless `plain`; Segment's never is). Exits 1 when the library reports a failed
// delivery, 0 otherwise.
import { Analytics } from '@segment/analytics-node'
import RudderAnalytics from '@rudderstack/rudder-sdk-node'

const [lib, host, writeKey, userId, plain] = process.argv.slice(2)
const errors = []
const done = (err) => { if (err) errors.push(String(err?.reason ?? err?.message ?? err)) }
const calls = [
  ['identify', { userId, traits: { title: 'VP Marketing', email: `${userId}@acme-corp.com` } }],
  ['page', { userId, name: 'Pricing', properties: { path: '/pricing' } }],
  ['track', { userId, event: 'Form Submitted', properties: { form: 'demo' } }],
]

if (lib === 'segment') {
  // Segment's library resolves `path` against `host`, so a host with a path (cargo lambda's
  // /lambda-url/score) goes into `path`
  const url = new URL(host)
  const path = `${url.pathname.replace(/\/$/, '')}/v1/batch`
  const analytics = new Analytics({ writeKey, host: url.origin, path, flushAt: calls.length, maxRetries: 0 })
  analytics.on('error', done)
  for (const [kind, message] of calls) analytics[kind](message, done)
  await analytics.closeAndFlush()
} else if (lib === 'rudderstack') {
  const client = new RudderAnalytics(writeKey, {
    dataPlaneUrl: host, flushAt: calls.length, retryCount: 0, errorHandler: done, logLevel: 'error',
    gzip: plain !== 'plain',
  })
  for (const [kind, message] of calls) client[kind](message, done)
  await client.flush()
} else {
  console.error(`unknown library ${lib}`)
  process.exit(2)
}
if (errors.length) {
  console.error(`${lib}: delivery failed: ${errors.join('; ')}`)
  process.exit(1)
}
console.log(`${lib} (node): ${calls.length} calls delivered for ${userId}`)
