"""Every store table holding data about an end user or a tenant is covered by the GDPR registry
(gateway/store/gdpr.py, gateway/store/gdpr_special.py) or exempted with a reason: a feature's new
table that names a user fails here until it gets its exporter/eraser entry."""

from __future__ import annotations

import importlib
import pkgutil

import gateway.store
from gateway.store.gdpr import USER_COLUMNS
from gateway.store.gdpr_special import EXEMPT, REGISTRY
from gateway.store.models import Base


def _every_table() -> dict[str, set[str]]:
    for module in pkgutil.iter_modules(gateway.store.__path__):
        importlib.import_module(f"gateway.store.{module.name}")
    return {table.name: set(table.c.keys()) for table in Base.metadata.sorted_tables}


def _personal(columns: set[str]) -> bool:
    return bool(columns & {*USER_COLUMNS, "tenant_id"})


def test_every_table_naming_a_user_or_tenant_is_in_the_registry() -> None:
    covered = {table for kind in REGISTRY for table in kind.tables}
    personal = {name for name, columns in _every_table().items() if _personal(columns)}
    assert personal - covered - set(EXEMPT) == set(), "add an entry to gateway/store/gdpr.py's OWNED_KINDS"


def test_the_check_fails_for_a_table_it_does_not_know() -> None:
    """The test above is live: a table with a user column and no entry is reported."""
    covered = {table for kind in REGISTRY for table in kind.tables}
    tables = {**_every_table(), "new_feature_rows": {"id", "tenant_id", "end_user"}}
    missing = {name for name, columns in tables.items() if _personal(columns)} - covered - set(EXEMPT)
    assert missing == {"new_feature_rows"}


def test_the_registry_names_only_real_tables_and_unique_kinds() -> None:
    tables = _every_table()
    assert {table for kind in REGISTRY for table in kind.tables} <= set(tables)
    names = [kind.name for kind in REGISTRY]
    assert len(names) == len(set(names))
