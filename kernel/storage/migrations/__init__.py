"""Alembic environment and revisions of the kernel database."""
