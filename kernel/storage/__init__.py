"""Kernel storage: SQLAlchemy models, Alembic migrations, the single writer and the lease."""
