-- The users table for PostgreSQL, with the FastAPI service's columns, so a database that its
-- SQLAlchemy models created keeps working (there, id is SERIAL and the timestamps are
-- TIMESTAMP WITHOUT TIME ZONE holding UTC; both are read correctly). Tables we create use
-- TIMESTAMPTZ. Applied at every start under an advisory lock, so instances starting together
-- do not race; each statement is a no-op when its object exists.
CREATE TABLE IF NOT EXISTS users (
    id SERIAL NOT NULL,
    name VARCHAR(100) NOT NULL,
    phone VARCHAR(32) NOT NULL,
    image_url VARCHAR(500),
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
