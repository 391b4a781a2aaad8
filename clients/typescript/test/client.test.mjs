// Against a running gateway (started by tests/clients/test_typescript_client.py, which sets
// TANTRA_BASE_URL, TANTRA_API_KEY, TANTRA_ADMIN_KEY and TANTRA_MODEL): chat, a stream, an admin
// flow with usage read back, upstream health, a 429 with Retry-After; the ESM and the CJS builds.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";

import { RateLimitError, Tantra, retryAfter } from "@tantra/client";

const model = process.env.TANTRA_MODEL;
const client = new Tantra({ maxRetries: 0, timeout: 120_000 });
const suffix = () => Math.random().toString(16).slice(2, 10);

test("the CommonJS build exports the same client", () => {
  const cjs = createRequire(import.meta.url)("@tantra/client");
  assert.equal(typeof cjs.Tantra, "function");
  assert.equal(new cjs.Tantra({ baseURL: "http://x/v1", apiKey: "k" }).rootURL, "http://x");
});

test("chat and stream through the openai package's objects", async () => {
  const answer = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Hello" }], max_tokens: 5 });
  assert.ok(answer.usage.completion_tokens > 0);
  const stream = await client.chat.completions.create({ model, messages: [{ role: "user", content: "Hello" }], max_tokens: 5, stream: true });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  assert.ok(text.length > 0);
});

test("admin flow: tenant, key, usage read back, audit pages", async () => {
  const tenant = await client.admin.tenants.create({ name: `ts-${suffix()}`, tpm: 100000 });
  assert.equal(tenant.limits.tpm, 100000);
  const key = await client.admin.keys.create({ tenant_id: tenant.id, name: "ts", rpm: 50 });
  assert.ok(key.key);
  assert.deepEqual((await client.admin.keys.list(tenant.id)).map((k) => k.id), [key.id]);
  const user = new Tantra({ apiKey: key.key, maxRetries: 0, timeout: 120_000 });
  await user.chat.completions.create({ model, messages: [{ role: "user", content: "Hi" }], max_tokens: 3 });
  const report = await client.admin.usage({ group_by: ["key"], key_id: key.id });
  assert.equal(report.data.length, 1);
  assert.equal(report.data[0].requests, 1);
  assert.equal((await client.admin.keys.revoke(key.id)).status, "revoked");
  const events = [];
  for await (const event of client.admin.audit.iter({ pageSize: 1, targetId: key.id })) events.push(event.action);
  assert.ok(events.length >= 2, events.join());
});

test("upstream health", async () => {
  const health = await client.health.upstreams();
  assert.ok(Object.values(health.upstreams).some((u) => u.models.includes(model)));
});

test("a 429 surfaces as RateLimitError with Retry-After", async () => {
  const tenant = await client.admin.tenants.create({ name: `ts-limited-${suffix()}` });
  const key = await client.admin.keys.create({ tenant_id: tenant.id, rpm: 1 });
  const user = new Tantra({ apiKey: key.key, maxRetries: 0, timeout: 120_000 });
  const ask = () => user.chat.completions.create({ model, messages: [{ role: "user", content: "Hi" }], max_tokens: 2 });
  await ask();
  await assert.rejects(ask(), (error) => {
    assert.ok(error instanceof RateLimitError);
    assert.equal(error.status, 429);
    assert.ok(error.error?.message);
    const wait = retryAfter(error);
    assert.ok(wait > 0 && wait <= 60, String(wait));
    return true;
  });
});

test("errors carry OpenAI's envelope", async () => {
  await assert.rejects(client.admin.tenants.retrieve("no-such-tenant"), (error) => {
    assert.equal(error.status, 404);
    assert.ok(error.error.message && error.error.type);
    return true;
  });
});
