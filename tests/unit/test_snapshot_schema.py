"""The snapshotters' own SQLite database has a schema version with migrations, like the
metadata DB: new databases start at the latest version, databases from before versions
existed step up keeping their rows, and a newer schema is refused."""

import os
import sqlite3

import pytest

from corral.metadata.errors import FailedPrecondition
from corral.snapshots.base import MIGRATIONS
from corral.snapshots.native import NativeSnapshotter


def test_new_database_has_the_latest_version(tmp_path):
    sn = NativeSnapshotter(str(tmp_path))
    assert sn.schema_version() == len(MIGRATIONS)
    sn.close()
    sn = NativeSnapshotter(str(tmp_path))          # reopening changes nothing
    assert sn.schema_version() == len(MIGRATIONS)
    sn.close()


def test_unversioned_database_is_migrated_with_its_rows(tmp_path):
    os.makedirs(tmp_path / "snapshots")
    db = sqlite3.connect(tmp_path / "metadata.db")
    db.execute("CREATE TABLE snapshots (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, "
               "kind INTEGER NOT NULL, parent TEXT NOT NULL DEFAULT '', labels TEXT NOT NULL DEFAULT '{}', "
               "created INTEGER NOT NULL, updated INTEGER NOT NULL, size INTEGER NOT NULL DEFAULT 0, "
               "inodes INTEGER NOT NULL DEFAULT 0)")
    db.execute("INSERT INTO snapshots (key, kind, created, updated) VALUES ('old', 3, 1, 1)")
    db.commit()
    db.close()
    os.makedirs(tmp_path / "snapshots" / "1")
    sn = NativeSnapshotter(str(tmp_path))
    assert sn.schema_version() == len(MIGRATIONS)
    assert sn.stat("old").name == "old"
    sn.close()


def test_newer_schema_is_refused(tmp_path):
    NativeSnapshotter(str(tmp_path)).close()
    db = sqlite3.connect(tmp_path / "metadata.db")
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(FailedPrecondition, match="snapshotter database schema 99 is newer"):
        NativeSnapshotter(str(tmp_path))
