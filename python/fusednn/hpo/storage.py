"""The study's storage: one SQLite file (the standard library's ``sqlite3``, WAL mode).

Tables: ``studies`` (name, direction, seed, search space and scheduler as JSON, creation time),
``trials`` (per study and trial number: config, seed, status, value, reports, budget reached,
error traceback, user attributes, worker, created/started/finished times, seconds of work)
and ``jobs`` (every job a scheduler issued: trial, budget, bracket, rung, status, value, and
the sequence numbers at which it was issued and finished, so that a resumed study replays the
scheduler's decisions in their original order). Configs, reports and attributes are JSON.

Only the study's driver process writes (executors' workers send their results back to it).
Each event (a trial created with its first job, a job finished with its trial's new state)
is one transaction, so a driver killed at any moment leaves a consistent file: on the next
``optimize`` the trials and jobs that were running are queued again and nothing that finished
is lost. ``synchronous=NORMAL``: a killed process loses nothing committed; a power loss may
lose the last transactions, never the file.
"""

import json
import os
import sqlite3
import time

__all__ = ["Storage"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    name TEXT PRIMARY KEY, direction TEXT NOT NULL, seed INTEGER NOT NULL, space TEXT NOT NULL,
    scheduler TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    study TEXT NOT NULL, number INTEGER NOT NULL, config TEXT NOT NULL, seed INTEGER NOT NULL, status TEXT NOT NULL,
    value REAL, reports TEXT NOT NULL, budget INTEGER, error TEXT, attrs TEXT NOT NULL, worker TEXT,
    created REAL NOT NULL, started REAL, finished REAL, duration REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (study, number));
CREATE TABLE IF NOT EXISTS jobs (
    study TEXT NOT NULL, id INTEGER NOT NULL, trial INTEGER NOT NULL, budget INTEGER, bracket INTEGER NOT NULL,
    rung INTEGER NOT NULL, status TEXT NOT NULL, value REAL, issued INTEGER NOT NULL, done INTEGER,
    PRIMARY KEY (study, id));
"""

TRIAL_FIELDS = ("number", "config", "seed", "status", "value", "reports", "budget", "error", "attrs", "worker",
                "created", "started", "finished", "duration")
JOB_FIELDS = ("id", "trial", "budget", "bracket", "rung", "status", "value", "issued", "done")
_JSON = ("config", "reports", "attrs")


class Storage:
    """A study database at ``path`` (its directory is created; ``":memory:"`` keeps it in memory)."""

    def __init__(self, path):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"storage: expected a file path or ':memory:', got {type(path).__name__}")
        self.path = os.fspath(path)
        if self.path != ":memory:":
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path, timeout=30.0)
            if self.path != ":memory:":
                self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            with self.conn:
                self.conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as err:
            raise ValueError(f"storage: {self.path} is not a usable SQLite study database: {err}") from None

    def close(self):
        self.conn.close()

    # ---- studies

    def study(self, name, direction, seed, space, scheduler):
        """Create the study ``name``, or check that the stored one has the same direction, seed,
        space and scheduler (ValueError naming what differs)."""
        row = self.conn.execute("SELECT direction, seed, space, scheduler FROM studies WHERE name = ?",
                                (name,)).fetchone()
        given = {"direction": direction, "seed": seed, "space": space, "scheduler": scheduler}
        if row is None:
            with self.conn:
                self.conn.execute("INSERT INTO studies VALUES (?, ?, ?, ?, ?, ?)",
                                  (name, direction, seed, json.dumps(space), json.dumps(scheduler), time.time()))
            return
        stored = {"direction": row[0], "seed": row[1], "space": json.loads(row[2]), "scheduler": json.loads(row[3])}
        for key in given:
            if stored[key] != given[key]:
                raise ValueError(f"Study {name!r} in {self.path} was created with {key} {stored[key]!r}, not "
                                 f"{given[key]!r}; resume it with the same {key}, or give the study another name")

    def studies(self):
        return [r[0] for r in self.conn.execute("SELECT name FROM studies ORDER BY created")]

    # ---- rows

    def trials(self, study):
        rows = self.conn.execute(f"SELECT {', '.join(TRIAL_FIELDS)} FROM trials WHERE study = ? ORDER BY number",
                                 (study,)).fetchall()
        out = []
        for row in rows:
            record = dict(zip(TRIAL_FIELDS, row))
            for key in _JSON:
                record[key] = json.loads(record[key])
            record["reports"] = [tuple(r) for r in record["reports"]]
            out.append(record)
        return out

    def jobs(self, study):
        rows = self.conn.execute(f"SELECT {', '.join(JOB_FIELDS)} FROM jobs WHERE study = ? ORDER BY id",
                                 (study,)).fetchall()
        return [dict(zip(JOB_FIELDS, row)) for row in rows]

    def transaction(self):
        """A context manager: the writes inside commit together (or not at all)."""
        return self.conn

    def insert_trial(self, study, trial):
        row = {k: (json.dumps(trial[k]) if k in _JSON else trial[k]) for k in TRIAL_FIELDS}
        self.conn.execute(f"INSERT INTO trials (study, {', '.join(TRIAL_FIELDS)}) VALUES "
                          f"(?{', ?' * len(TRIAL_FIELDS)})", (study, *row.values()))

    def update_trial(self, study, number, **fields):
        sets = ", ".join(f"{k} = ?" for k in fields)
        values = [json.dumps(v) if k in _JSON else v for k, v in fields.items()]
        self.conn.execute(f"UPDATE trials SET {sets} WHERE study = ? AND number = ?", (*values, study, number))

    def insert_job(self, study, job):
        self.conn.execute(f"INSERT INTO jobs (study, {', '.join(JOB_FIELDS)}) VALUES (?{', ?' * len(JOB_FIELDS)})",
                          (study, *(job[k] for k in JOB_FIELDS)))

    def update_job(self, study, job_id, **fields):
        sets = ", ".join(f"{k} = ?" for k in fields)
        self.conn.execute(f"UPDATE jobs SET {sets} WHERE study = ? AND id = ?", (*fields.values(), study, job_id))
