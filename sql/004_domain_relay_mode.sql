-- 004_domain_relay_mode.sql - a domain's own relay mode
--
-- rcptgate-smtpd relays a domain's mail as [smtpd] relay_mode says (proxy,
-- queue, proxy-then-queue); a domain whose next hop needs another way
-- (an inside that is often down: queue; one whose verdict the sender must
-- hear live: proxy) names it here, written by `rcptgate domain add
-- --relay-mode=MODE`. '' = the [smtpd] relay_mode.
ALTER TABLE domain ADD COLUMN relay_mode TEXT NOT NULL DEFAULT '';
