CREATE TABLE operations (
    -- One row per operation (an upgrade, a restart) of a cluster.
    id          INTEGER PRIMARY KEY,
    cluster     TEXT NOT NULL,
    -- The id paddock prints and resumes by, e.g. upgrade-1767225600000.
    op          TEXT NOT NULL,
    -- upgrade, restart: the id up to its first '-'.
    kind        TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    -- Set by op-done, op-failed or op-rolled-back; NULL while unfinished.
    finished_at TEXT,
    -- running, paused, done, failed, rolled-back.
    status      TEXT NOT NULL,
    -- The operation's parameters (op-started's detail), JSON.
    parameters  TEXT NOT NULL DEFAULT 'null' CHECK (json_valid(parameters)),
    -- Where its spec came from: the spec repository's path (or a commit); NULL if unknown.
    source      TEXT,
    UNIQUE (cluster, op)
);

CREATE TABLE events (
    -- Every event of an operation, in the order recorded.
    -- Increases with each record, across operations.
    id        INTEGER PRIMARY KEY,
    operation INTEGER NOT NULL REFERENCES operations (id),
    -- 1, 2, ... within the operation.
    seq       INTEGER NOT NULL,
    -- op-started, step-started, step-done, step-failed, step-undone, op-paused, op-done,
    -- op-failed, op-rolled-back.
    event     TEXT NOT NULL,
    -- The step, for step-* events.
    step      TEXT,
    at        TEXT NOT NULL,
    -- What the step printed or decided, JSON.
    detail    TEXT NOT NULL DEFAULT 'null' CHECK (json_valid(detail)),
    UNIQUE (operation, seq)
);

CREATE TABLE imports (
    -- Legacy JSONL journals (journal/<cluster>.jsonl) imported, so none is imported twice.
    cluster TEXT NOT NULL,
    file    TEXT NOT NULL,
    sha256  TEXT NOT NULL,
    records INTEGER NOT NULL,
    at      TEXT NOT NULL,
    PRIMARY KEY (cluster, sha256)
);
