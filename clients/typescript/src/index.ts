// Tantra's TypeScript client: the `openai` package's client (so `client.chat`, `client.files`, ...
// are its own objects, pointed at the gateway's /v1) plus Tantra's own routes as typed resources.
// Tantra's routes go through the same client's request machinery: its retries (honouring
// `retry-after-ms` / `Retry-After`), timeouts and error classes (carrying OpenAI's envelope).

import OpenAI, { type ClientOptions } from "openai";
import type {
  ApiKey,
  AuditEvent,
  KeyCreate,
  KeyRotate,
  KeyUpdate,
  Tenant,
  TenantCreate,
  TenantUpdate,
  UpstreamHealth,
  UsageQuery,
  UsageReport,
} from "./types.js";

export * from "./types.js";
export { OpenAI };
export const {
  APIError,
  APIConnectionError,
  AuthenticationError,
  BadRequestError,
  ConflictError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  InternalServerError,
} = OpenAI;

/** Seconds the gateway asked to wait (`retry-after-ms`, else `Retry-After`), or undefined. */
export function retryAfter(error: InstanceType<typeof OpenAI.APIError>): number | undefined {
  const headers = (error.headers ?? {}) as Record<string, string | undefined>;
  const ms = Number(headers["retry-after-ms"]);
  if (headers["retry-after-ms"] !== undefined && Number.isFinite(ms)) return ms / 1000;
  const s = Number(headers["retry-after"]);
  return headers["retry-after"] !== undefined && Number.isFinite(s) ? s : undefined;
}

export interface TantraOptions extends Omit<ClientOptions, "baseURL" | "apiKey"> {
  /** The gateway's root (a trailing /v1 is accepted); default TANTRA_BASE_URL. */
  baseURL?: string;
  /** For the OpenAI endpoints; default TANTRA_API_KEY. */
  apiKey?: string;
  /** For `client.admin`; default TANTRA_ADMIN_KEY. */
  adminKey?: string;
}

type Query = Record<string, string | number | undefined | null>;

/** The base of every Tantra resource, and the extension point: subclass it, reach it with `client.resource(Kind)`. */
export class APIResource {
  constructor(protected readonly client: Tantra) {}

  protected request<T>(method: "get" | "post" | "patch", path: string, opts: { query?: Query; body?: unknown; admin?: boolean } = {}): Promise<T> {
    const query = Object.fromEntries(Object.entries(opts.query ?? {}).filter(([, v]) => v !== undefined && v !== null));
    const headers: Record<string, string> = {};
    if (opts.admin) {
      if (!this.client.adminKey) throw new Error("This needs the admin key: new Tantra({ adminKey }) or TANTRA_ADMIN_KEY.");
      headers["Authorization"] = `Bearer ${this.client.adminKey}`;
    }
    return this.client[method]<unknown, T>(this.client.rootURL + path, { query, body: opts.body, headers });
  }
}

export class Tenants extends APIResource {
  create(body: TenantCreate): Promise<Tenant> {
    return this.request("post", "/admin/tenants", { body, admin: true });
  }
  async list(): Promise<Tenant[]> {
    return (await this.request<{ data: Tenant[] }>("get", "/admin/tenants", { admin: true })).data;
  }
  retrieve(tenantId: string): Promise<Tenant> {
    return this.request("get", `/admin/tenants/${encodeURIComponent(tenantId)}`, { admin: true });
  }
  update(tenantId: string, body: TenantUpdate): Promise<Tenant> {
    return this.request("patch", `/admin/tenants/${encodeURIComponent(tenantId)}`, { body, admin: true });
  }
}

export class Keys extends APIResource {
  create(body: KeyCreate): Promise<ApiKey> {
    return this.request("post", "/admin/keys", { body, admin: true });
  }
  async list(tenantId?: string): Promise<ApiKey[]> {
    return (await this.request<{ data: ApiKey[] }>("get", "/admin/keys", { query: { tenant_id: tenantId }, admin: true })).data;
  }
  retrieve(keyId: string): Promise<ApiKey> {
    return this.request("get", `/admin/keys/${encodeURIComponent(keyId)}`, { admin: true });
  }
  update(keyId: string, body: KeyUpdate): Promise<ApiKey> {
    return this.request("patch", `/admin/keys/${encodeURIComponent(keyId)}`, { body, admin: true });
  }
  rotate(keyId: string, body?: KeyRotate): Promise<ApiKey> {
    return this.request("post", `/admin/keys/${encodeURIComponent(keyId)}/rotate`, { body, admin: true });
  }
  revoke(keyId: string): Promise<ApiKey> {
    return this.request("post", `/admin/keys/${encodeURIComponent(keyId)}/revoke`, { admin: true });
  }
}

export class Audit extends APIResource {
  /** One page, newest first; the next is `beforeId: <the last one's id>`. */
  async list(opts: { limit?: number; beforeId?: number; targetId?: string } = {}): Promise<AuditEvent[]> {
    const query = { limit: opts.limit ?? 100, before_id: opts.beforeId, target_id: opts.targetId };
    return (await this.request<{ data: AuditEvent[] }>("get", "/admin/audit", { query, admin: true })).data;
  }
  /** Every event, newest first, fetching pages as the loop goes: `for await (const e of audit.iter())`. */
  async *iter(opts: { pageSize?: number; targetId?: string } = {}): AsyncGenerator<AuditEvent> {
    const limit = opts.pageSize ?? 100;
    let beforeId: number | undefined;
    for (;;) {
      const page = await this.list({ limit, beforeId, targetId: opts.targetId });
      yield* page;
      if (page.length < limit) return;
      beforeId = page[page.length - 1]!.id;
    }
  }
}

export class Admin extends APIResource {
  readonly tenants = new Tenants(this.client);
  readonly keys = new Keys(this.client);
  readonly audit = new Audit(this.client);

  usage(query: UsageQuery = {}): Promise<UsageReport> {
    const { group_by, ...rest } = query;
    return this.request("get", "/admin/usage", { query: { ...rest, group_by: group_by?.join(","), format: "json" }, admin: true });
  }
  status(): Promise<Record<string, unknown>> {
    return this.request("get", "/admin/status", { admin: true });
  }
}

export class Health extends APIResource {
  upstreams(): Promise<UpstreamHealth> {
    return this.request("get", "/health/upstreams");
  }
}

const env = (name: string): string | undefined =>
  typeof process !== "undefined" ? process.env?.[name] : undefined;

export class Tantra extends OpenAI {
  readonly rootURL: string;
  readonly adminKey: string | undefined;
  readonly admin: Admin;
  readonly health: Health;
  private readonly extensions = new Map<unknown, APIResource>();

  constructor(options: TantraOptions = {}) {
    const { baseURL, apiKey, adminKey, ...rest } = options;
    const root = (baseURL ?? env("TANTRA_BASE_URL") ?? "http://127.0.0.1:8000").replace(/\/+$/, "").replace(/\/v1$/, "");
    const admin = adminKey ?? env("TANTRA_ADMIN_KEY");
    super({ ...rest, baseURL: root + "/v1", apiKey: apiKey ?? env("TANTRA_API_KEY") ?? admin });
    this.rootURL = root;
    this.adminKey = admin;
    this.admin = new Admin(this);
    this.health = new Health(this);
  }

  /** The client's one instance of an extension resource (an `APIResource` subclass). */
  resource<R extends APIResource>(kind: new (client: Tantra) => R): R {
    let found = this.extensions.get(kind);
    if (!found) this.extensions.set(kind, (found = new kind(this)));
    return found as R;
  }
}

export default Tantra;
