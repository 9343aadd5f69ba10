-- 002_access.sql - access lists kept in the store
--
-- What rcptgate-smtpd's client, HELO, sender and recipient access lists
-- hold when they live in the store rather than in rcptgate.conf (smtpd
-- store_access = yes), written by `rcptgate access add|del`. Keys are in
-- the normal form lib/store_access.c gives them (store_access_key()), so
-- a lookup is one indexed equality per candidate key.

CREATE TABLE access (
    type            TEXT NOT NULL,          -- client, helo, sender, recipient
    key             TEXT NOT NULL,          -- address, network, name, @domain ...
    action          TEXT NOT NULL,          -- OK, REJECT, DEFER, WARN, DUNNO
    text            TEXT NOT NULL DEFAULT '',
    created         INTEGER NOT NULL,
    PRIMARY KEY (type, key)
) WITHOUT ROWID;
