-- The users table exactly as the FastAPI service's SQLAlchemy models created it, so a database
-- file written by that service opens unchanged. Applied at every start; each statement is a
-- no-op when its object already exists, so existing data is never touched.
CREATE TABLE IF NOT EXISTS users (
	id INTEGER NOT NULL,
	name VARCHAR(100) NOT NULL,
	phone VARCHAR(32) NOT NULL,
	image_url VARCHAR(500),
	email VARCHAR(255) NOT NULL,
	password_hash VARCHAR(255) NOT NULL,
	created_at DATETIME DEFAULT CURRENT_TIMESTAMP NOT NULL,
	updated_at DATETIME DEFAULT CURRENT_TIMESTAMP NOT NULL,
	PRIMARY KEY (id)
);
CREATE UNIQUE INDEX IF NOT EXISTS ix_users_email ON users (email);
-- Redundant with the primary key, but SQLAlchemy created it (index=True), and keeping it makes
-- a database we create identical to one the FastAPI service created.
CREATE INDEX IF NOT EXISTS ix_users_id ON users (id);
-- Ours: emails are compared without regard to case. We store them lower-cased, but rows the
-- FastAPI service wrote may not be, so lookups go through lower(email) and this index.
CREATE INDEX IF NOT EXISTS ix_users_email_lower ON users (lower(email));
-- Ours: one identity per email. `key` is `fields::email_key` of the user's email (NFKC and full
-- Unicode case folding), so `ａｎｎ@…`, `ANN@…` and `ann@…` share one key, and this table's
-- primary key lets only one user hold it, whatever the races. A table of its own rather than a
-- column, so the FastAPI service's `users` table stays exactly as it was. Rows without a key
-- (the FastAPI service's, or any written before this table) get one at start, in id order.
CREATE TABLE IF NOT EXISTS email_keys (
	key TEXT NOT NULL PRIMARY KEY,
	user_id INTEGER NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE ON UPDATE CASCADE
);
-- Ours: failed logins counted per account (the normalised email, registered or not), shared by
-- every instance, so that no account allows more than LOGIN_FAILURES_PER_ACCOUNT failed password
-- checks per LOGIN_FAILURE_WINDOW (see src/throttle.rs). `at` is Unix milliseconds. Rows past
-- the window are pruned as logins go on.
CREATE TABLE IF NOT EXISTS login_failures (
	id INTEGER PRIMARY KEY,
	account_key TEXT NOT NULL,
	at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_login_failures_account ON login_failures (account_key, at);
-- Ours: the addresses each account has logged in from successfully, whose logins may use the
-- last tenth of the failure budget that new addresses cannot.
CREATE TABLE IF NOT EXISTS login_known_clients (
	account_key TEXT NOT NULL,
	client TEXT NOT NULL,
	last_success INTEGER NOT NULL,
	PRIMARY KEY (account_key, client)
);
-- Ours: sessions (src/sessions.rs). A login opens one; its refresh token is two random parts,
-- kept here only as SHA-256 hashes: `family_hash` names the session for as long as it lives,
-- `token_hash` is the current secret, `previous_hash` the one the last refresh spent (at
-- `rotated_at`), so that a retry within REFRESH_REUSE_GRACE can be told from theft. `id` is the
-- session's public id, carried in access tokens as `sid`. Times are Unix milliseconds. Expired
-- sessions, sessions revoked more than a day ago, and a user's revoked sessions beyond their
-- last 100 are deleted as logins go on.
CREATE TABLE IF NOT EXISTS sessions (
	id TEXT NOT NULL PRIMARY KEY,
	user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	family_hash TEXT NOT NULL UNIQUE,
	token_hash TEXT NOT NULL,
	previous_hash TEXT,
	rotated_at INTEGER,
	created_at INTEGER NOT NULL,
	last_used_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	user_agent TEXT,
	client TEXT NOT NULL,
	revoked_at INTEGER
);
-- A user's live sessions apart, so that what a login reads to keep the user within their limits
-- is the rows it keeps, however many logins came before; the second also serves the foreign key.
CREATE INDEX IF NOT EXISTS ix_sessions_user_live ON sessions (user_id, last_used_at) WHERE revoked_at IS NULL;
CREATE INDEX IF NOT EXISTS ix_sessions_user ON sessions (user_id, revoked_at);
CREATE INDEX IF NOT EXISTS ix_sessions_expires ON sessions (expires_at);
CREATE INDEX IF NOT EXISTS ix_sessions_revoked ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
-- Ours: access tokens without a session (`sid`), which the FastAPI service issued, cannot be
-- revoked one by one. Logging out of every session records the moment here, and such tokens
-- of the user issued (`iat`, Unix seconds) at or before it are refused from then on.
CREATE TABLE IF NOT EXISTS token_cutoffs (
	user_id INTEGER NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
	revoked_before INTEGER NOT NULL
);
