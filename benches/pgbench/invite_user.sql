-- InviteUser of a new email with an API token: every statement the service sends per call,
-- with the invitation quota off (`USERMGMT_INVITE_QUOTA=0`, as the benchmark runs it).
-- The auth layer only screens the API token (src/service/credential_cache.rs); the
-- transaction of `Store::invite` (src/store/invitations.rs) sends:
--     - the account's share lock: `store::lock_account_shared` (src/store/mod.rs);
--     - its facts, which find the caller's API token by its hash:
--       `store::invite_statements::invite_facts_statement`. (`last_used_at` is written
--       after the transaction, at most once a minute: `Store::touch_token`.)
--     - its rows (user, membership, invitation, outbox email; with a `request_id`, the
--       invite_requests row too) chained in one `WITH`: `invite_statements::chained_inserts`;
--     - the audit event, `store::audit::Event::record` (src/store/audit.rs): the account's
--       next change number (`feed::next_seq_statement`, whose row stays locked until
--       COMMIT), the event and the watchers' NOTIFY (`feed::announcement`) in one statement.
--     With a quota, one more statement follows the event: `store::quota::check_invite_quota`
--     reads at most the quota's count + 1 entries of the partial index
--     ix_audit_events_invitations.
--
-- Run with prepared statements, as sqlx sends them, for example:
--   pgbench -M prepared -n -c 32 -j 4 -T 20 -f benches/pgbench/invite_user.sql \
--     -D account_id=<account uuid> -D admin_id=<administrator uuid> \
--     -D token_id=<their token's uuid> -D token_hash=<its sha256 hex> <database>
-- The service binds its clock, fresh UUIDv7s and the email; here `now()` and ids made of
-- a random number stand for them (starting with ffffffff, so that they sort after the
-- service's and the seeded members keep their places in the list). The payload is the size
-- of a real one. (pgbench reads `:name` as a variable, so the JSON of `cloud_access`
-- carries a space after its colon.)
\set n random(1, 281474976710655)
BEGIN;
SELECT "accounts"."id", "accounts"."name", "accounts"."created_at" FROM "accounts" WHERE "accounts"."id" = :account_id LIMIT 1 FOR SHARE;
SELECT "a"."name" AS "account_name", "cm"."role" AS "caller_role", "cu"."name" AS "inviter_name", "em"."id" AS "member_of_account", "t"."id" AS "t_id", "t"."account_id" AS "t_account_id", "t"."issuer_id" AS "t_issuer_id", "t"."name" AS "t_name", "t"."description" AS "t_description", "t"."role" AS "t_role", "t"."secret_hash" AS "t_secret_hash", "t"."expires_at" AS "t_expires_at", "t"."created_at" AS "t_created_at", "t"."last_used_at" AS "t_last_used_at", "t"."deleted_at" AS "t_deleted_at", "eu"."id" AS "eu_id", "eu"."email" AS "eu_email", "eu"."name" AS "eu_name", "eu"."name_lower" AS "eu_name_lower", "eu"."language" AS "eu_language", "eu"."password_hash" AS "eu_password_hash", "eu"."activated" AS "eu_activated", "eu"."two_factor_enabled" AS "eu_two_factor_enabled", "eu"."created_at" AS "eu_created_at" FROM "accounts" AS "a" LEFT JOIN "api_tokens" AS "t" ON "t"."secret_hash" = :token_hash AND "t"."deleted_at" IS NULL AND ("t"."expires_at" IS NULL OR "t"."expires_at" > now()) LEFT JOIN "memberships" AS "cm" ON "cm"."account_id" = "a"."id" AND "cm"."user_id" = "t"."issuer_id" AND "cm"."status" = 'active' LEFT JOIN "users" AS "cu" ON "cu"."id" = "t"."issuer_id" LEFT JOIN "users" AS "eu" ON "eu"."email" = 'bench' || :n::text || '@invite.example' LEFT JOIN "memberships" AS "em" ON "em"."account_id" = "a"."id" AND "em"."user_id" = "eu"."id" WHERE "a"."id" = :account_id;
WITH "row0" AS (INSERT INTO "users" ("id", "email", "name", "name_lower", "language", "password_hash", "activated", "two_factor_enabled", "created_at") VALUES (('ffffffff-ffff-7000-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid, 'bench' || :n::text || '@invite.example', 'Bench Invitee', 'bench invitee', 'en', NULL, false, false, now())) , "row1" AS (INSERT INTO "memberships" ("id", "account_id", "user_id", "role", "cloud_access", "status", "invited_by", "invited_at", "invitation_expires_at", "accepted_at", "invited_name", "invited_name_lower", "invited_language", "created_at") VALUES (('ffffffff-ffff-7001-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid, :account_id::uuid, ('ffffffff-ffff-7000-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid, 2, '{"scope":"client","administrator": false}', 'invited', :admin_id::uuid, now(), now() + interval '1 day', NULL, 'Bench Invitee', 'bench invitee', 'en', now())) , "row2" AS (INSERT INTO "invitations" ("id", "membership_id", "secret_hash", "kind", "created_at", "expires_at", "consumed_at") VALUES (('ffffffff-ffff-7002-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid, ('ffffffff-ffff-7001-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid, md5(:n::text) || md5(:n::text || 'x'), 'new_user', now(), now() + interval '1 day', NULL)) INSERT INTO "outbox" ("id", "kind", "invitation_id", "payload", "attempts", "next_attempt_at", "last_error", "created_at", "sent_at", "dead_at", "lease_id", "last_attempt_at", "trace_context") VALUES (('ffffffff-ffff-7003-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid, 'invitation', ('ffffffff-ffff-7002-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid, '{"kind":"new_user","to":"bench@invite.example","invitee_name":"Bench Invitee","language":"en","account_name":"Bench","inviter_name":"Bench Admin","expires_at":"2026-12-01T09:00:00Z","secret":"uminv_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"}', 0, now(), NULL, now(), NULL, NULL, NULL, NULL, NULL);
WITH "seq" AS (INSERT INTO "account_change_sequences" ("account_id", "last_seq") VALUES (:account_id::uuid, 1) ON CONFLICT ("account_id") DO UPDATE SET "last_seq" = "account_change_sequences"."last_seq" + 1 RETURNING "last_seq") INSERT INTO "audit_events" ("id", "account_id", "actor_id", "actor_credential", "action", "target_user_id", "target_token_id", "request_id", "changes", "created_at", "link_delivery", "seq") SELECT ('ffffffff-ffff-7004-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid, :account_id::uuid, :admin_id::uuid, 'api_token:' || :token_id::text, 'user.invited', ('ffffffff-ffff-7000-8000-' || lpad(to_hex(:n::bigint), 12, '0'))::uuid, NULL::uuid, 'dafb5767-f403-485d-9791-7248d99a01aa', '[]', now(), 'email', "seq"."last_seq" FROM "seq" RETURNING pg_notify('usermgmt_changes', "audit_events"."account_id"::text);
COMMIT;
