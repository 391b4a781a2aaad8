"""HTTP plumbing shared by every endpoint: edge middleware, draining, SSE framing, raw streaming
responses and watching the client's connection."""
