"""Alembic environment and revisions. ``gateway.database.upgrade_database`` runs them."""
