"""The gateway's settings: the schema (`schema.Settings`, read from TANTRA_* variables and the YAML
file), its sections (`sections`: pure data the request path may read), the loader (`load`), live
reload (`reload`) and the typed per-request snapshot (`policy`).

Only the app's composition root imports the schema and the loader; the request path gets a
`Policy` snapshot handed in, so it never reaches the settings loader."""
