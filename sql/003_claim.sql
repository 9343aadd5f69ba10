-- 003_claim.sql - addresses claimed by a directory object that does not hold them
--
-- Within one source an address has one recipient row, which points at the
-- object holding it. When a second object of that source carries the same
-- address (a mistake in the directory, or an address being moved), the
-- holder keeps it and the other object's claim is recorded here: it gets
-- neither the address nor, through it, the sender-login check; but its
-- flags still count (an "internal senders only" group keeps restricting the
-- address), `rcptgate query` names it, and syncd logs the collision once,
-- when the claim row is made. When the holder lets go, the claimant with
-- the lowest guid takes the address. See lib/store_sync.h.
CREATE TABLE claim (
    address         TEXT NOT NULL,
    object_id       INTEGER NOT NULL REFERENCES object(id) ON DELETE CASCADE,
    since           INTEGER NOT NULL,       -- when the claim was first seen
    PRIMARY KEY (address, object_id)
) WITHOUT ROWID;
CREATE INDEX claim_object ON claim(object_id);
