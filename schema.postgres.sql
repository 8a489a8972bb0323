-- The users table for PostgreSQL, with the FastAPI service's columns, so a database that its
-- SQLAlchemy models created keeps working (there, id is SERIAL and the timestamps are
-- TIMESTAMP WITHOUT TIME ZONE holding UTC; both are read correctly). Tables we create use
-- TIMESTAMPTZ. Applied at every start under an advisory lock, so instances starting together
-- do not race; each statement is a no-op when its object exists.
--
-- One difference from SQLAlchemy's table: image_url holds 2048 characters, the limit the API
-- accepts, where the model declared 500 (SQLite never enforced it; PostgreSQL does).
CREATE TABLE IF NOT EXISTS users (
    id SERIAL NOT NULL,
    name VARCHAR(100) NOT NULL,
    phone VARCHAR(32) NOT NULL,
    image_url VARCHAR(2048),
    email VARCHAR(255) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    created_at TIMESTAMPTZ DEFAULT now() NOT NULL,
    updated_at TIMESTAMPTZ DEFAULT now() NOT NULL,
    PRIMARY KEY (id)
);
CREATE UNIQUE INDEX IF NOT EXISTS ix_users_email ON users (email);
-- Redundant with the primary key, but SQLAlchemy created it (index=True).
CREATE INDEX IF NOT EXISTS ix_users_id ON users (id);
-- Ours: emails are compared without regard to case, through lower(email).
CREATE INDEX IF NOT EXISTS ix_users_email_lower ON users (lower(email));
-- Widen image_url in a table SQLAlchemy created. Widening a VARCHAR only changes the catalogue
-- (no rewrite), and the check keeps later starts from taking the table lock at all.
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'users'
          AND column_name = 'image_url' AND character_maximum_length < 2048
    ) THEN
        ALTER TABLE users ALTER COLUMN image_url TYPE VARCHAR(2048);
    END IF;
END $$;
-- Ours: one identity per email. `key` is `fields::email_key` of the user's email (NFKC and full
-- Unicode case folding), so `ａｎｎ@…`, `ANN@…` and `ann@…` share one key, and the primary key
-- lets only one user hold it, across instances and races. A table of its own rather than a
-- column, so the FastAPI service's `users` table stays exactly as it was. Rows without a key
-- (the FastAPI service's, or any written before this table) get one at start, in id order.
-- COLLATE "C": keys are compared byte for byte, never by a locale.
CREATE TABLE IF NOT EXISTS email_keys (
    key TEXT COLLATE "C" NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT email_keys_pkey PRIMARY KEY (key),
    CONSTRAINT email_keys_user_id_key UNIQUE (user_id)
);
-- Ours: failed logins counted per account (the normalised email, registered or not), shared by
-- every instance, so that no account allows more than LOGIN_FAILURES_PER_ACCOUNT failed password
-- checks per LOGIN_FAILURE_WINDOW (see src/throttle.rs). `at` is Unix milliseconds. Rows past
-- the window are pruned as logins go on.
CREATE TABLE IF NOT EXISTS login_failures (
    id BIGSERIAL PRIMARY KEY,
    account_key TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_login_failures_account ON login_failures (account_key, at);
-- Ours: the addresses each account has logged in from successfully, whose logins may use the
-- last tenth of the failure budget that new addresses cannot.
CREATE TABLE IF NOT EXISTS login_known_clients (
    account_key TEXT NOT NULL,
    client TEXT NOT NULL,
    last_success BIGINT NOT NULL,
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
    id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_hash TEXT COLLATE "C" NOT NULL UNIQUE,
    token_hash TEXT NOT NULL,
    previous_hash TEXT,
    rotated_at BIGINT,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    user_agent TEXT,
    client TEXT NOT NULL,
    revoked_at BIGINT
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
    revoked_before BIGINT NOT NULL
);
