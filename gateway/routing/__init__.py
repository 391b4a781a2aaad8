"""Virtual models (`auto`): a served model chosen per request by configured rules (docs/orchestration.md)."""
