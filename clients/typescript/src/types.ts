// Typed views of Tantra's own answers and request bodies (gateway/routes/admin.py, operations.py).
// The Python client's twins are checked against the gateway's OpenAPI description in
// tests/clients/test_python_openapi_drift.py; these are checked against the same in
// tests/clients/test_typescript_client.py (the field lists below are read from this file).

export type BudgetPeriod = "day" | "month";

export interface Limits {
  allowed_models: string[] | null;
  rpm: number | null;
  tpm: number | null;
  audio_spm: number | null;
  max_concurrent: number | null;
  budget_tokens: number | null;
  budget_usd: number | null;
  budget_period: BudgetPeriod;
  /** Input tokens of batches not yet ended (OpenAI's enqueued tokens). */
  batch_tokens: number | null;
  /** Memory in chat for requests naming an end user; null: the tenant's, then the default. */
  memory: boolean | null;
  /** Fine-tuning jobs running or queued at once, and fine-tuned models kept. */
  fine_tuning_jobs: number | null;
  fine_tuning_models: number | null;
}

export interface Tenant {
  id: string;
  object: "tenant";
  name: string;
  disabled: boolean;
  created_at: string | null;
  updated_at: string | null;
  limits: Limits;
}

export interface ApiKey {
  id: string;
  object: "api_key";
  tenant_id: string;
  name: string;
  redacted: string;
  status: "active" | "expired" | "revoked";
  created_at: string | null;
  updated_at: string | null;
  rotated_at: string | null;
  previous_valid_until: string | null;
  expires_at: string | null;
  revoked_at: string | null;
  limits: Limits;
  /** The secret: only in the answers to create and rotate. */
  key?: string;
}

export interface AuditEvent {
  id: number;
  created_at: string | null;
  actor: string;
  action: string;
  target_type: string | null;
  target_id: string | null;
  request_id: string | null;
  client_ip: string | null;
  details: Record<string, unknown> | null;
}

export type GroupBy = "tenant" | "key" | "model" | "served_model" | "day";

export interface UsageReport {
  object: "list";
  group_by: GroupBy[];
  data: Array<Record<string, string | number | null>>;
}

export interface UpstreamState {
  url: string;
  kind: string;
  state: "closed" | "open" | "half_open";
  consecutive_failures: number;
  last_failure: string | null;
  outstanding: number;
  max_outstanding: number | null;
  open_for_s: number | null;
  models: string[];
}

export interface UpstreamHealth {
  upstreams: Record<string, UpstreamState>;
  draining: boolean;
}

// Request bodies (drift-checked field names: TenantCreate, TenantUpdate, KeyCreate, KeyUpdate, KeyRotate).

export interface LimitFields {
  allowed_models?: string[] | null;
  rpm?: number | null;
  tpm?: number | null;
  audio_spm?: number | null;
  max_concurrent?: number | null;
  budget_tokens?: number | null;
  budget_usd?: number | null;
  budget_period?: BudgetPeriod;
  batch_tokens?: number | null;
  memory?: boolean | null;
  fine_tuning_jobs?: number | null;
  fine_tuning_models?: number | null;
}

export interface TenantCreate extends LimitFields {
  name: string;
  disabled?: boolean;
}

export interface TenantUpdate extends LimitFields {
  name?: string;
  disabled?: boolean;
}

export interface KeyCreate extends LimitFields {
  tenant_id: string;
  name?: string;
  expires_at?: string | null;
}

export interface KeyUpdate extends LimitFields {
  name?: string;
  expires_at?: string | null;
}

export interface KeyRotate {
  grace_seconds?: number;
}

export interface UsageQuery {
  group_by?: GroupBy[];
  start?: string;
  end?: string;
  tenant_id?: string;
  key_id?: string;
  model?: string;
  served_model?: string;
}
