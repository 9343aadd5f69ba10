-- 001_initial.sql - the first rcptgate store schema
--
-- Addresses are stored in rcptgate's normal form (lib/addr.c): local part
-- ASCII-lowercased, domain a lowercase A-label; "@domain" is a catch-all.
-- Times are unix seconds.

-- Where entries come from: a directory, an imported file, or "static".
CREATE TABLE source (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    type            TEXT NOT NULL,          -- ldap, graph, file, import, static
    cookie          TEXT,                   -- sync cookie / highest USN / delta link
    invocation_id   TEXT,                   -- AD: the DC the USN belongs to
    last_success    INTEGER,                -- last applied sync
    last_run        INTEGER                 -- last attempt, applied or not
);

-- Domains we accept mail for, and where their mail goes.
CREATE TABLE domain (
    name            TEXT PRIMARY KEY,       -- lowercase A-label
    nexthop         TEXT NOT NULL DEFAULT '',  -- Postfix transport syntax; '' = default
    subdomains      INTEGER NOT NULL DEFAULT 0,
    created         INTEGER NOT NULL
) WITHOUT ROWID;

-- Directory objects (users, groups, contacts ...) that carry addresses.
CREATE TABLE object (
    id              INTEGER PRIMARY KEY,
    source_id       INTEGER NOT NULL REFERENCES source(id) ON DELETE CASCADE,
    guid            TEXT NOT NULL,          -- objectGUID / entryUUID / Graph id
    dn              TEXT NOT NULL DEFAULT '',
    kind            TEXT NOT NULL,
    flags           INTEGER NOT NULL DEFAULT 0,  -- 1: internal senders only
    last_seen       INTEGER NOT NULL,
    UNIQUE (source_id, guid)
);

-- Valid recipients. An address may be claimed by several sources; each
-- source owns its rows. The primary key serves the lookup (address first)
-- and, in address order, the per-source scan a full replace merges with;
-- there is deliberately no index by source: with a few sources a scan is
-- cheap, and a second B-tree would double the cost of every row written.
CREATE TABLE recipient (
    address         TEXT NOT NULL,
    source_id       INTEGER NOT NULL REFERENCES source(id) ON DELETE CASCADE,
    object_id       INTEGER REFERENCES object(id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    flags           INTEGER NOT NULL DEFAULT 0,
    last_seen       INTEGER NOT NULL,
    PRIMARY KEY (address, source_id)
) WITHOUT ROWID;
-- For ON DELETE CASCADE from object; imported rows have no object.
CREATE INDEX recipient_object ON recipient(object_id) WHERE object_id IS NOT NULL;

-- Group membership (direct; nesting resolved by the reader).
CREATE TABLE member (
    group_id        INTEGER NOT NULL REFERENCES object(id) ON DELETE CASCADE,
    member_id       INTEGER NOT NULL REFERENCES object(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, member_id)
) WITHOUT ROWID;
CREATE INDEX member_member ON member(member_id);

-- Login names (sAMAccountName, userPrincipalName, uid) of an object.
CREATE TABLE login (
    name            TEXT NOT NULL,
    object_id       INTEGER NOT NULL REFERENCES object(id) ON DELETE CASCADE,
    PRIMARY KEY (name, object_id)
) WITHOUT ROWID;
CREATE INDEX login_object ON login(object_id);

-- One row per sync or import run.
CREATE TABLE sync_run (
    id              INTEGER PRIMARY KEY,
    source_id       INTEGER NOT NULL REFERENCES source(id) ON DELETE CASCADE,
    started         INTEGER NOT NULL,
    duration_ms     INTEGER NOT NULL DEFAULT 0,
    mode            TEXT NOT NULL,          -- full, incremental, import
    added           INTEGER NOT NULL DEFAULT 0,
    changed         INTEGER NOT NULL DEFAULT 0,
    removed         INTEGER NOT NULL DEFAULT 0,
    outcome         TEXT NOT NULL,          -- ok, refused, failed
    message         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sync_run_source ON sync_run(source_id, started);

-- Static entries (postmaster@, abuse@) belong to this source.
INSERT INTO source (name, type) VALUES ('static', 'static');
