"""Storage: SQLAlchemy 2 models, the database handle, filters and paging."""
