"""What every repository of the package shares: one database, one way to run a transaction."""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from ...core.errors import StorageError
from ..db import Database, describe_db_error


class Repository:
    """Base of the repositories: each public method runs in one `_transaction`.

    `WHAT` names the data in error messages ("the history database", "the rating data"...).
    """

    WHAT = "the database"

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def database(self) -> Database:
        return self._db

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Session]:
        """One transaction; database failures come out as StorageError with a readable line."""
        try:
            with self._db.session(write=write) as session, session.begin():
                yield session
        except IntegrityError as exc:
            raise StorageError(describe_db_error(exc, f"{self.WHAT} refused the change")) from exc
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise StorageError(describe_db_error(
                exc, f"{self.WHAT} could not be {'updated' if write else 'read'}")) from exc
