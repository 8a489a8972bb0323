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
