"""Tenants, keys, limits, the usage ledger and the audit log in a SQL database (SQLAlchemy, Alembic)."""

from gateway.store.database import Database
from gateway.store.files import FileStore, Owner
from gateway.store.ledger import UsageLedger
from gateway.store.records import AuditContext, BudgetPeriod, KeyRecord, Limits, UsageRow
from gateway.store.reports import GROUPS, GroupBy
from gateway.store.repository import AlreadyExists, NotFoundInStore, Store, utcnow

__all__ = [
    "GROUPS",
    "AlreadyExists",
    "AuditContext",
    "BudgetPeriod",
    "Database",
    "FileStore",
    "GroupBy",
    "KeyRecord",
    "Limits",
    "NotFoundInStore",
    "Owner",
    "Store",
    "UsageLedger",
    "UsageRow",
    "utcnow",
]
