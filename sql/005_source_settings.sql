-- 005_source_settings.sql - the settings a source's cookie was taken with
--
-- rcptgate-syncd resumes an incremental pull from the stored cookie, also
-- after a restart. A cookie only lists the changes within the base,
-- filter and attributes it was taken with: after a change of those, the
-- objects newly in scope would be missing until the next full pull. So
-- every commit stores a fingerprint of the [source NAME] settings beside
-- the cookie, and an incremental pull whose fingerprint differs (or is
-- NULL: written before this column) pulls in full instead.
ALTER TABLE source ADD COLUMN settings TEXT;
