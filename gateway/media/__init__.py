"""Media in chat content parts: the adapters run off the event loop, their errors in OpenAI's terms."""
