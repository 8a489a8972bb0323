//! Configuration: every start-up setting, declared once, with the FastAPI service's names.
//!
//! `Settings` holds one field per setting. Its doc comment is the `--help` text, its name gives
//! the variable (`DATABASE_URL`) and the flag (`--database-url`), and its attributes give the
//! default and the parser, which carries the range and the refusal message. clap turns that
//! declaration into the command line and `--help`; this module layers the sources (flag, then
//! process environment, then `.env`, then the default) and checks every value on one path, so
//! `main` and the tests ([`Config::from_lookup`]) see the same rules. It never mutates the
//! process environment and never lets a secret (the JWT key, a database password) reach a
//! message or `Debug` output.

use std::collections::HashMap;
use std::env::VarError;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::{TypedValueParser, ValueParser};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use jsonwebtoken::Algorithm;

use crate::client::TrustedProxies;
use crate::cors::CorsOrigins;
use crate::throttle::Limits;

/// Which database the service stores users in, parsed from `DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// A SQLite file (`sqlite:///relative/path` or `sqlite:////absolute/path`).
    Sqlite {
        /// Path to the database file, as given (relative paths resolve against the working dir).
        path: PathBuf,
    },
    /// A PostgreSQL server (`postgresql://user:pass@host:port/db`, or `postgres://`).
    Postgres {
        /// The connection URL, its scheme normalised to `postgresql://`.
        url: PostgresUrl,
    },
}

/// A PostgreSQL connection URL. It may hold a password, so its `Debug` and `Display` show it
/// redacted; [`PostgresUrl::expose`] gives the real one to the driver.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// The URL with its password, for connecting. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({})", redact_url(&self.0))
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

/// The secret that signs and verifies access tokens.
#[derive(Clone)]
pub struct JwtSecret {
    /// The key bytes.
    pub bytes: Vec<u8>,
    /// True when `JWT_SECRET` was unset and this secret was generated for this process only.
    pub ephemeral: bool,
}

/// Everything the service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where users are stored (`DATABASE_URL`).
    pub database: DatabaseConfig,
    /// The token signing key (`JWT_SECRET`, or a random one for this process).
    pub jwt_secret: JwtSecret,
    /// The HMAC algorithm tokens are signed with (`JWT_ALGORITHM`).
    pub jwt_algorithm: Algorithm,
    /// How long an access token lives, in minutes (`JWT_ACCESS_TOKEN_EXPIRE_MINUTES`).
    pub access_token_expire_minutes: u32,
    /// How long a session lives without a refresh (`JWT_REFRESH_TOKEN_EXPIRE_DAYS`).
    pub refresh_token_lifetime: Duration,
    /// How long after a refresh token is spent presenting it again is taken for a client's
    /// retry rather than theft (`REFRESH_REUSE_GRACE`, seconds).
    pub refresh_reuse_grace: Duration,
    /// The address to listen on (`HOST`).
    pub host: String,
    /// The port to listen on; 0 asks the OS for a free one (`PORT`).
    pub port: u16,
    /// The certificate and key to serve HTTPS with (`TLS_CERT_FILE`, `TLS_KEY_FILE`); `None`
    /// serves plain HTTP. Checked to load and to match when the configuration is read.
    pub tls: Option<TlsFiles>,
    /// How many requests are handled at once (`WORKERS`); each runs on its connection's thread.
    pub workers: usize,
    /// The bcrypt work factor for new password hashes (`BCRYPT_COST`).
    pub bcrypt_cost: u32,
    /// The `env_logger` filter (`RUST_LOG`), passed through unvalidated.
    pub log_filter: Option<String>,
    /// PostgreSQL connections each instance keeps at most (`DATABASE_POOL_SIZE`); SQLite's
    /// pool is sized by the worker count instead, since its connections cost next to nothing.
    pub database_pool_size: u32,
    /// How long to wait for a database connection before giving up
    /// (`DATABASE_CONNECT_TIMEOUT`, seconds).
    pub database_connect_timeout: Duration,
    /// Threads that compute bcrypt hashes (`HASH_THREADS`); one per core by default, since
    /// each keeps a core busy.
    pub hash_threads: usize,
    /// Logins and registrations that may wait for a hashing thread (`HASH_QUEUE_SIZE`); past
    /// that they are refused at once with 503 and `Retry-After`.
    pub hash_queue_size: usize,
    /// Within how long a login or registration is answered (`HASH_QUEUE_TIMEOUT`, seconds):
    /// one that can no longer be hashed in time gets 503 rather than a late answer.
    pub hash_queue_timeout: Duration,
    /// Connections open at once (`MAX_CONNECTIONS`); past it a new one gets 503 and is closed.
    /// `None` derives it from the open-file limit when the server starts
    /// (`config::default_max_connections`).
    pub max_connections: Option<usize>,
    /// Connections one client (an IPv4 address or an IPv6 /64) may hold at once
    /// (`MAX_CONNECTIONS_PER_CLIENT`); past it its new ones get 503. `None`: half of
    /// `MAX_CONNECTIONS`, so that no one client can take them all.
    pub max_connections_per_client: Option<usize>,
    /// How long a connection may wait for its next request before it is closed
    /// (`IDLE_TIMEOUT`, seconds).
    pub idle_timeout: Duration,
    /// How long a request's whole head may take once it has begun (`HEADER_TIMEOUT`, seconds);
    /// past it, 408 and close.
    pub header_timeout: Duration,
    /// How long a request's whole body may take (`BODY_TIMEOUT`, seconds); past it, 408 and
    /// close.
    pub body_timeout: Duration,
    /// How long writing a whole response may take (`WRITE_TIMEOUT`, seconds); a client that
    /// does not read it in time is dropped.
    pub write_timeout: Duration,
    /// Which web pages on other origins may call the API from a browser (`CORS_ORIGINS`):
    /// none by default.
    pub cors_origins: CorsOrigins,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` name the client (`TRUSTED_PROXIES`).
    pub trusted_proxies: TrustedProxies,
    /// Login and registration limits (`RATE_LIMITS` and the `LOGIN_*` and `REGISTRATION*`
    /// settings).
    pub rate_limits: Limits,
    /// Hashing jobs one client may hold queued or running (`HASH_JOBS_PER_CLIENT`); `None`: a
    /// quarter of the pool.
    pub hash_jobs_per_client: Option<usize>,
    /// Whether `GET /metrics` is served on the service's own port (`METRICS`).
    pub metrics: bool,
    /// Where `GET /metrics` is served apart from the API (`METRICS_ADDR`, `host:port`).
    pub metrics_addr: Option<String>,
    /// How log lines are written (`LOG_FORMAT`).
    pub log_format: LogFormat,
}

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One line of text per record, as `env_logger` writes it (the default).
    Text,
    /// One JSON object per line, for log collectors (see `crate::logging`).
    Json,
}

/// Where a setting's value came from, as `check-config` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A flag on the command line.
    Flag,
    /// The process environment.
    Environment,
    /// The `.env` file in the working directory.
    DotEnv,
    /// Nothing gave it: the declared default (or none).
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Flag => "flag",
            Source::Environment => "environment",
            Source::DotEnv => ".env",
            Source::Default => "default",
        })
    }
}

/// One setting as it was configured, for `check-config`: its value as given (secrets masked:
/// `JWT_SECRET` only says whether it is set and how long it is, a database password is
/// replaced by `***`) and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownSetting {
    /// The variable, as in [`VARIABLES`].
    pub variable: &'static str,
    /// The value, safe to print.
    pub value: String,
    /// Where it came from.
    pub source: Source,
}

/// What the command line asks for: a subcommand (none means serve), the configuration it runs
/// under, and every setting as configured (for `check-config`).
#[derive(Debug)]
pub struct Invocation {
    /// The settings, checked.
    pub config: Config,
    /// The subcommand given, if any; none means serve.
    pub command: Option<crate::cli::Command>,
    /// Every setting with its (masked) value and source, in [`VARIABLES`] order.
    pub settings: Vec<ShownSetting>,
}

/// Where the HTTPS certificate chain and its private key are read from, at start-up and again
/// on each SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The PEM certificate chain (`TLS_CERT_FILE`).
    pub cert_file: PathBuf,
    /// The PEM private key (`TLS_KEY_FILE`).
    pub key_file: PathBuf,
}

/// A configuration value that stops start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable at fault, or `".env"` when the file itself could not be read.
    pub variable: &'static str,
    /// What is wrong and, where it helps, how to fix it; never contains a secret.
    pub message: String,
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret(<redacted>)")
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.variable, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Why [`Config::from_args_and_env`] gave no configuration.
#[derive(Debug)]
pub enum ArgsError {
    /// `--help` or `--version` was asked for, or the command line is malformed (an unknown
    /// flag, a flag without its value): clap's own text, which [`clap::Error::exit`] prints
    /// to the right stream before exiting 0 or 2.
    CommandLine(clap::Error),
    /// A setting is invalid, wherever it came from.
    Config(ConfigError),
}

impl From<ConfigError> for ArgsError {
    fn from(err: ConfigError) -> ArgsError {
        ArgsError::Config(err)
    }
}

/// Every variable the service reads, in the order they are checked: the fields of
/// `Settings`, in order (a unit test holds the two together).
pub const VARIABLES: [&str; 39] = [
    "DATABASE_URL",
    "DATABASE_POOL_SIZE",
    "DATABASE_CONNECT_TIMEOUT",
    "JWT_SECRET",
    "JWT_ALGORITHM",
    "JWT_ACCESS_TOKEN_EXPIRE_MINUTES",
    "JWT_REFRESH_TOKEN_EXPIRE_DAYS",
    "REFRESH_REUSE_GRACE",
    "HOST",
    "PORT",
    "TLS_CERT_FILE",
    "TLS_KEY_FILE",
    "WORKERS",
    "BCRYPT_COST",
    "HASH_THREADS",
    "HASH_QUEUE_SIZE",
    "HASH_QUEUE_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_CLIENT",
    "IDLE_TIMEOUT",
    "HEADER_TIMEOUT",
    "BODY_TIMEOUT",
    "WRITE_TIMEOUT",
    "CORS_ORIGINS",
    "TRUSTED_PROXIES",
    "RATE_LIMITS",
    "LOGIN_LOCK_AFTER",
    "LOGIN_LOCK_AFTER_PER_CLIENT",
    "LOGIN_LOCK_SECONDS",
    "LOGIN_LOCK_MAX_SECONDS",
    "LOGIN_FAILURES_PER_ACCOUNT",
    "LOGIN_FAILURE_WINDOW",
    "REGISTRATIONS_PER_CLIENT",
    "REGISTRATION_WINDOW",
    "HASH_JOBS_PER_CLIENT",
    "METRICS",
    "METRICS_ADDR",
    "RUST_LOG",
    "LOG_FORMAT",
];

/// HS256 wants a key at least as long as its 256-bit output (RFC 7518 §3.2).
const MIN_SECRET_BYTES: usize = 32;
const GENERATED_SECRET_BYTES: usize = 32;
const MIN_DEFAULT_WORKERS: usize = 8;
const MAX_WORKERS: usize = 1024;
const MAX_MAX_CONNECTIONS: usize = 1_000_000;
/// Descriptors kept back from connections for everything else: the listener, standard
/// streams, logs, and a margin for accept itself.
const RESERVED_DESCRIPTORS: u64 = 64;
/// Descriptors one database connection may hold: SQLite's file, its WAL and shared memory.
const DESCRIPTORS_PER_DATABASE_CONNECTION: u64 = 3;

/// SQLAlchemy spellings of SQLite that the FastAPI service's `.env` files may use.
const SQLITE_SCHEMES: [&str; 3] = ["sqlite", "sqlite+pysqlite", "sqlite+aiosqlite"];
/// SQLAlchemy spellings of PostgreSQL: the driver part is dropped, ours is the `postgres` crate.
const POSTGRES_SCHEMES: [&str; 6] = [
    "postgresql",
    "postgres",
    "postgresql+asyncpg",
    "postgresql+psycopg",
    "postgresql+psycopg2",
    "postgresql+pg8000",
];
const SUPPORTED_DATABASE_URLS: &str = "use sqlite:///relative/path, sqlite:////absolute/path \
     (the sqlite+aiosqlite:// and sqlite+pysqlite:// spellings work too) or \
     postgresql://user:password@host:port/database (or postgres://)";

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Every setting, in the order they are checked (the first bad value is the one reported).
///
/// Each field is the one declaration of a setting: `env` names its variable and `long` its
/// flag (the variable in lower case, with dashes), the doc comment is its `--help` line,
/// `default_value*` its default, and `value_parser` the check that refuses a bad value with
/// a message naming its range. clap never reads the process environment for these:
/// [`Config::resolve`] hands it each value, so flags, `.env` and the tests' lookups all go
/// through the same parsers.
#[derive(Parser)]
#[command(
    name = "backnd-api",
    version,
    long_about = None,
    about = "backnd-api: user registration and login service (the FastAPI backnd-api contract)\n\n\
             Each setting comes from its flag, else the environment, else a .env file in the \
             working directory, else its default; an empty value counts as unset."
)]
struct Settings {
    /// Where users are stored: sqlite:///relative/path, sqlite:////absolute/path or
    /// postgresql://user:password@host:5432/database (the password is never shown)
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite:///./db.sqlite3",
          value_parser = setting(database_url))]
    database_url: DatabaseConfig,

    /// PostgreSQL connections per instance (SQLite sizes its own pool)
    // SQLAlchemy's default pool holds 5 and overflows to 15; 10 sits between, and leaves a
    // PostgreSQL server's usual 100 connections room for several instances.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 10,
          value_parser = whole::<u32>(1, 1000, "a connection count"))]
    database_pool_size: u32,

    /// Seconds to wait for a database connection
    #[arg(long, env = "DATABASE_CONNECT_TIMEOUT", default_value_t = 5,
          value_parser = whole::<u64>(1, 300, "a whole number of seconds"))]
    database_connect_timeout: u64,

    /// At least 32 bytes (openssl rand -hex 32); unset: random per process, so tokens do not
    /// survive a restart
    // Hidden: it has no usable flag, since every user on the machine can read a command line.
    // `Config::command` lists it apart, and `Config::resolve` refuses it as a flag.
    #[arg(long, env = "JWT_SECRET", hide = true, value_parser = setting(jwt_secret))]
    jwt_secret: Option<JwtSecret>,

    /// HS256, HS384 or HS512
    #[arg(long, env = "JWT_ALGORITHM", default_value = "HS256",
          value_parser = setting(jwt_algorithm))]
    jwt_algorithm: Algorithm,

    /// Token lifetime in minutes
    // At most a year: long enough for any sane token, small enough that `now + exp` can
    // never overflow.
    #[arg(long, env = "JWT_ACCESS_TOKEN_EXPIRE_MINUTES", default_value_t = 60,
          value_parser = setting(expire_minutes))]
    jwt_access_token_expire_minutes: u32,

    /// Days a session lives without a refresh; each refresh starts them again
    // Ten years at most, so that `now + lifetime` in milliseconds can never overflow.
    #[arg(long, env = "JWT_REFRESH_TOKEN_EXPIRE_DAYS", default_value_t = 30,
          value_parser = whole::<u32>(1, 3650, "a whole number of days"))]
    jwt_refresh_token_expire_days: u32,

    /// Seconds during which a refresh token just spent gets a plain 401 (a client retrying);
    /// after them, presenting it again ends its session as stolen
    #[arg(long, env = "REFRESH_REUSE_GRACE", default_value_t = 10,
          value_parser = whole::<u64>(0, 3600, "a whole number of seconds"))]
    refresh_reuse_grace: u64,

    /// Address to listen on
    #[arg(long, env = "HOST", default_value = "127.0.0.1", value_parser = setting(host))]
    host: String,

    /// Port to listen on; 0 picks a free one
    #[arg(long, env = "PORT", default_value_t = 8000, value_parser = setting(port))]
    port: u16,

    /// PEM certificate chain, the server's own first: with TLS_KEY_FILE, serve HTTPS (TLS 1.2
    /// and 1.3); both are read again on SIGHUP
    #[arg(long, env = "TLS_CERT_FILE", value_parser = setting(file_path))]
    tls_cert_file: Option<PathBuf>,

    /// PEM private key of TLS_CERT_FILE (unencrypted PKCS#8, PKCS#1 or SEC1)
    // A flag is fine: it is the key's path, not the key, that the command line shows.
    #[arg(long, env = "TLS_KEY_FILE", value_parser = setting(file_path))]
    tls_key_file: Option<PathBuf>,

    /// Requests handled at once: by default 4 per core, at least 8
    #[arg(long, env = "WORKERS", default_value_t = default_workers(),
          value_parser = whole::<usize>(1, MAX_WORKERS, "a worker count"))]
    workers: usize,

    /// Cost of new password hashes, 4 to 31; each step doubles the time
    // The range the `bcrypt` crate (and the bcrypt format's two-digit cost field) accepts.
    #[arg(long, env = "BCRYPT_COST", default_value_t = 12,
          value_parser = whole::<u32>(4, 31, "a bcrypt cost"))]
    bcrypt_cost: u32,

    /// Threads computing bcrypt hashes: by default one per core
    #[arg(long, env = "HASH_THREADS", default_value_t = default_hash_threads(),
          value_parser = whole::<usize>(1, 256, "a thread"))]
    hash_threads: usize,

    /// Hashes that may wait for a thread (more get 503 at once; 0: none wait)
    // 64 waiting hashes at cost 12 on two cores are about eight seconds of work, within the
    // default timeout, so a full queue still drains before its requests give up.
    #[arg(long, env = "HASH_QUEUE_SIZE", default_value_t = 64,
          value_parser = whole::<usize>(0, 100_000, "a queue length"))]
    hash_queue_size: usize,

    /// Seconds within which a hash is answered (else 503)
    #[arg(long, env = "HASH_QUEUE_TIMEOUT", default_value_t = 10,
          value_parser = whole::<u64>(1, 600, "a whole number of seconds"))]
    hash_queue_timeout: u64,

    /// Connections open at once (then 503): by default what the open-file limit leaves
    #[arg(long, env = "MAX_CONNECTIONS",
          value_parser = whole::<usize>(1, MAX_MAX_CONNECTIONS, "a connection count"))]
    max_connections: Option<usize>,

    /// Connections one address (IPv6: /64) may hold: by default half of MAX_CONNECTIONS
    #[arg(long, env = "MAX_CONNECTIONS_PER_CLIENT",
          value_parser = whole::<usize>(1, MAX_MAX_CONNECTIONS, "a connection count"))]
    max_connections_per_client: Option<usize>,

    /// Seconds a connection may wait for its next request
    #[arg(long, env = "IDLE_TIMEOUT", default_value_t = 30,
          value_parser = whole::<u64>(1, 3600, "a whole number of seconds"))]
    idle_timeout: u64,

    /// Seconds for a whole request head (else 408)
    #[arg(long, env = "HEADER_TIMEOUT", default_value_t = 10,
          value_parser = whole::<u64>(1, 3600, "a whole number of seconds"))]
    header_timeout: u64,

    /// Seconds for a whole request body (else 408)
    #[arg(long, env = "BODY_TIMEOUT", default_value_t = 10,
          value_parser = whole::<u64>(1, 3600, "a whole number of seconds"))]
    body_timeout: u64,

    /// Seconds for writing a whole response (else the client is dropped)
    #[arg(long, env = "WRITE_TIMEOUT", default_value_t = 10,
          value_parser = whole::<u64>(1, 3600, "a whole number of seconds"))]
    write_timeout: u64,

    /// Origins whose web pages may call the API from a browser: none by default, else a
    /// comma-separated list such as https://app.example.com,http://localhost:3000, or * for
    /// any (tokens are bearer headers, never cookies)
    #[arg(long, env = "CORS_ORIGINS", value_parser = setting(CorsOrigins::parse))]
    cors_origins: Option<CorsOrigins>,

    /// Proxies whose X-Forwarded-For / Forwarded are believed: addresses and CIDR ranges,
    /// comma-separated (by default none)
    #[arg(long, env = "TRUSTED_PROXIES", value_parser = setting(TrustedProxies::parse))]
    trusted_proxies: Option<TrustedProxies>,

    /// on or off: every login, registration and per-client hashing limit below at once
    #[arg(long, env = "RATE_LIMITS", default_value = "on", action = clap::ArgAction::Set,
          value_parser = setting(on_off))]
    rate_limits: bool,

    /// Failed logins from one address on one account before it is locked out for a while
    #[arg(long, env = "LOGIN_LOCK_AFTER", default_value_t = 5,
          value_parser = whole::<u32>(1, 1000, "a number of failures"))]
    login_lock_after: u32,

    /// Failed logins from one address on any accounts before the address is locked out
    #[arg(long, env = "LOGIN_LOCK_AFTER_PER_CLIENT", default_value_t = 20,
          value_parser = whole::<u32>(1, 100_000, "a number of failures"))]
    login_lock_after_per_client: u32,

    /// Seconds of the first lock-out; each further failure doubles it
    #[arg(long, env = "LOGIN_LOCK_SECONDS", default_value_t = 2,
          value_parser = whole::<u64>(1, 86_400, "a whole number of seconds"))]
    login_lock_seconds: u64,

    /// Seconds of the longest lock-out
    #[arg(long, env = "LOGIN_LOCK_MAX_SECONDS", default_value_t = 900,
          value_parser = whole::<u64>(1, 86_400, "a whole number of seconds"))]
    login_lock_max_seconds: u64,

    /// Failed password checks one account allows per LOGIN_FAILURE_WINDOW, over every instance
    // 100 an hour is OWASP ASVS 4.0 2.2.1's bar.
    #[arg(long, env = "LOGIN_FAILURES_PER_ACCOUNT", default_value_t = 100,
          value_parser = whole::<u32>(1, 100_000, "a number of failures"))]
    login_failures_per_account: u32,

    /// Seconds over which an email's failed logins are counted; lock-outs forgive one failure
    /// per this window divided by their threshold
    #[arg(long, env = "LOGIN_FAILURE_WINDOW", default_value_t = 3600,
          value_parser = whole::<u64>(1, 604_800, "a whole number of seconds"))]
    login_failure_window: u64,

    /// Registrations one address may attempt per REGISTRATION_WINDOW
    #[arg(long, env = "REGISTRATIONS_PER_CLIENT", default_value_t = 10,
          value_parser = whole::<u32>(1, 100_000, "a number of registrations"))]
    registrations_per_client: u32,

    /// Seconds over which registrations are counted
    #[arg(long, env = "REGISTRATION_WINDOW", default_value_t = 3600,
          value_parser = whole::<u64>(1, 604_800, "a whole number of seconds"))]
    registration_window: u64,

    /// Logins and registrations one address may have queued or hashing: by default a quarter
    /// of HASH_THREADS + HASH_QUEUE_SIZE (more get 503)
    #[arg(long, env = "HASH_JOBS_PER_CLIENT",
          value_parser = whole::<usize>(1, 100_000, "a job count"))]
    hash_jobs_per_client: Option<usize>,

    /// on or off: GET /metrics (Prometheus text format) on the service's own port
    #[arg(long, env = "METRICS", default_value = "off", action = clap::ArgAction::Set,
          value_parser = setting(on_off))]
    metrics: bool,

    /// host:port to serve GET /metrics on, apart from the API (e.g. 127.0.0.1:9100); by
    /// default none
    #[arg(long, env = "METRICS_ADDR", value_parser = setting(metrics_addr))]
    metrics_addr: Option<String>,

    /// Log filter: by default info (e.g. warn, debug, access=off); passed through as it is
    #[arg(long, env = "RUST_LOG")]
    rust_log: Option<String>,

    /// text or json: json writes one JSON object per line (time, level, target, message, and
    /// the access log's fields)
    #[arg(long, env = "LOG_FORMAT", default_value = "text", value_parser = setting(log_format))]
    log_format: LogFormat,

    /// The administration subcommands (src/cli.rs); none means serve.
    #[command(subcommand)]
    command: Option<crate::cli::Command>,
}

impl Config {
    /// Returns the command line: every setting's flag, variable, default and help, from
    /// [`Settings`]. `after_help` ends `--help` (the routes, say).
    ///
    /// Settings that have no flag, because a command line is visible to every user, are
    /// listed after the options with their variable only.
    pub(crate) fn command(after_help: &str) -> clap::Command {
        // An environment value shown in `--help` could be a secret. Global: a setting's flag
        // may come before or after a subcommand (`backnd-api user list --database-url …`).
        // Under a heading of their own, so a subcommand's own options stand apart in its help.
        let command = Settings::command().mut_args(|arg| {
            arg.hide_env_values(true)
                .global(true)
                .help_heading("Settings (each also a variable)")
        });
        let mut footer = String::from(
            "Only from the environment or .env, never a flag (a command line is visible to \
             every user):\n",
        );
        for arg in command.get_arguments().filter(|arg| is_env_only(arg)) {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            footer.push_str(&format!("  {}  {help}\n", variable_of(arg)));
        }
        footer.push('\n');
        footer.push_str(after_help);
        command.after_help(footer)
    }

    /// Builds the configuration from the command line `args` (the program name first) layered
    /// over the process environment and `./.env`.
    ///
    /// A flag wins over the environment, which wins over `.env` (an empty variable falls
    /// through to it), which wins over the default. `--help`, `--version` and a malformed
    /// command line give [`ArgsError::CommandLine`] before `.env` is read; `after_help` ends
    /// `--help`. See [`Config::from_lookup`] for how values are checked.
    pub fn from_args_and_env<I, T>(args: I, after_help: &str) -> Result<Config, ArgsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Config::from_sources(args, after_help, process_var, Path::new(".env"))
            .map(|invocation| invocation.config)
    }

    /// Reads the command line as [`Config::from_args_and_env`] does, and also returns the
    /// subcommand it names (none: serve) and every setting with its source, for `main`.
    pub fn load<I, T>(args: I, after_help: &str) -> Result<Invocation, ArgsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Config::from_sources(args, after_help, process_var, Path::new(".env"))
    }

    /// Builds the configuration from `lookup(name)` alone, applying defaults and validating
    /// each value.
    ///
    /// Values are trimmed, and an empty value counts as unset. The first invalid variable in
    /// [`VARIABLES`] order is reported. When `JWT_SECRET` is unset a random secret is generated
    /// and marked `ephemeral`, so tokens die with the process; the caller should log a warning
    /// about that.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        Config::resolve(None, |name| {
            lookup(name).map(|value| (value, Source::Environment))
        })
        .map(|(config, _)| config)
    }

    fn from_sources<I, T>(
        args: I,
        after_help: &str,
        process: impl Fn(&'static str) -> Result<Option<String>, ConfigError>,
        dotenv_path: &Path,
    ) -> Result<Invocation, ArgsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        // The command line alone, values unchecked: this answers --help and --version and
        // refuses unknown flags, and says which settings a flag gave. Checking waits until
        // every source is known, so that all values go through one path in one order; clap's
        // copies of process variables (it reads them when an argument is declared) are
        // ignored, since they are neither trimmed nor layered over `.env`.
        let command_line = Config::command(after_help)
            .mut_args(|arg| arg.value_parser(ValueParser::os_string()))
            .try_get_matches_from(args)
            .map_err(ArgsError::CommandLine)?;
        let command = match command_line.subcommand() {
            Some(_) => Some(
                crate::cli::Command::from_arg_matches(&command_line)
                    .map_err(ArgsError::CommandLine)?,
            ),
            None => None,
        };
        let merged = merge_env(process, dotenv_path)?;
        let (config, settings) =
            Config::resolve(Some(&command_line), |name| merged.get(name).cloned())
                .map_err(ArgsError::Config)?;
        Ok(Invocation {
            config,
            command,
            settings,
        })
    }

    /// Checks every setting, taking each from `command_line` when a flag gave it, else from
    /// `lookup` (trimmed, empty meaning unset), else its default.
    ///
    /// The chosen values are handed to clap as flags in declaration order, with no environment,
    /// so each is checked by its declared parser and the first bad one stops the parse.
    fn resolve(
        command_line: Option<&ArgMatches>,
        lookup: impl Fn(&str) -> Option<(String, Source)>,
    ) -> Result<(Config, Vec<ShownSetting>), ConfigError> {
        let command = Settings::command().mut_args(|arg| arg.env(None));
        let mut args = vec![OsString::from("backnd-api")];
        let mut shown = Vec::new();
        for arg in command.get_arguments() {
            let variable = variable_of(arg);
            let id = arg.get_id().as_str();
            let flag = command_line
                .filter(|matches| matches.value_source(id) == Some(ValueSource::CommandLine))
                .and_then(|matches| matches.get_raw(id))
                .and_then(|mut values| values.next_back());
            let value = match flag {
                Some(_) if is_env_only(arg) => {
                    return Err(ConfigError {
                        variable,
                        message: "it is read only from the environment or .env, never from the \
                                  command line, which every user on the machine can see"
                            .to_owned(),
                    })
                }
                Some(value) => (
                    value
                        .to_str()
                        .map(str::to_owned)
                        .ok_or_else(|| ConfigError {
                            variable,
                            message: "the value on the command line is not valid UTF-8".to_owned(),
                        })?,
                    Source::Flag,
                ),
                None => match lookup(variable) {
                    Some((value, source)) if !value.trim().is_empty() => {
                        (value.trim().to_owned(), source)
                    }
                    _ => {
                        let default: Vec<String> = arg
                            .get_default_values()
                            .iter()
                            .map(|value| value.to_string_lossy().into_owned())
                            .collect();
                        let value = (!default.is_empty()).then(|| default.join(","));
                        shown.push(shown_setting(variable, value.as_deref(), Source::Default));
                        continue;
                    }
                },
            };
            let (value, source) = value;
            shown.push(shown_setting(variable, Some(&value), source));
            // `--name=value` takes the value whole, even when it starts with a dash.
            let mut flag = OsString::from("--");
            flag.push(arg.get_long().unwrap_or(id));
            flag.push("=");
            flag.push(value);
            args.push(flag);
        }
        let settings = command
            .try_get_matches_from(args)
            .and_then(|matches| Settings::from_arg_matches(&matches))
            .map_err(refusal_of)?;
        Ok((Config::from_settings(settings)?, shown))
    }

    fn from_settings(settings: Settings) -> Result<Config, ConfigError> {
        Ok(Config {
            database: settings.database_url,
            jwt_secret: match settings.jwt_secret {
                Some(secret) => secret,
                None => JwtSecret::generate()?,
            },
            jwt_algorithm: settings.jwt_algorithm,
            access_token_expire_minutes: settings.jwt_access_token_expire_minutes,
            refresh_token_lifetime: Duration::from_secs(
                u64::from(settings.jwt_refresh_token_expire_days) * 86_400,
            ),
            refresh_reuse_grace: Duration::from_secs(settings.refresh_reuse_grace),
            host: settings.host,
            port: settings.port,
            tls: tls_files(settings.tls_cert_file, settings.tls_key_file)?,
            workers: settings.workers,
            bcrypt_cost: settings.bcrypt_cost,
            log_filter: settings.rust_log,
            database_pool_size: settings.database_pool_size,
            database_connect_timeout: Duration::from_secs(settings.database_connect_timeout),
            hash_threads: settings.hash_threads,
            hash_queue_size: settings.hash_queue_size,
            hash_queue_timeout: Duration::from_secs(settings.hash_queue_timeout),
            max_connections: settings.max_connections,
            max_connections_per_client: settings.max_connections_per_client,
            idle_timeout: Duration::from_secs(settings.idle_timeout),
            header_timeout: Duration::from_secs(settings.header_timeout),
            body_timeout: Duration::from_secs(settings.body_timeout),
            write_timeout: Duration::from_secs(settings.write_timeout),
            cors_origins: settings.cors_origins.unwrap_or_default(),
            trusted_proxies: settings.trusted_proxies.unwrap_or_default(),
            rate_limits: Limits {
                enabled: settings.rate_limits,
                login_lock_after: settings.login_lock_after,
                login_lock_after_per_client: settings.login_lock_after_per_client,
                login_lock: Duration::from_secs(settings.login_lock_seconds),
                login_lock_max: Duration::from_secs(settings.login_lock_max_seconds),
                login_failures_per_account: settings.login_failures_per_account,
                login_failure_window: Duration::from_secs(settings.login_failure_window),
                registrations_per_client: settings.registrations_per_client,
                registration_window: Duration::from_secs(settings.registration_window),
            },
            hash_jobs_per_client: settings.hash_jobs_per_client,
            metrics: settings.metrics,
            metrics_addr: settings.metrics_addr,
            log_format: settings.log_format,
        })
    }
}

/// A setting's value as `check-config` prints it: the JWT secret only as whether it is set
/// and its length, a database URL without its password, anything unset as `<unset>`.
fn shown_setting(variable: &'static str, value: Option<&str>, source: Source) -> ShownSetting {
    let value = match (variable, value) {
        ("JWT_SECRET", Some(secret)) => format!("<set, {} bytes>", secret.len()),
        ("JWT_SECRET", None) => "<unset: a random one per process>".to_owned(),
        ("DATABASE_URL", Some(url)) => redact_url(url),
        (_, Some(value)) => value.to_owned(),
        (_, None) => "<unset>".to_owned(),
    };
    ShownSetting {
        variable,
        value,
        source,
    }
}

/// Whether a setting may come only from the environment or `.env`: the hidden ones.
fn is_env_only(arg: &clap::Arg) -> bool {
    arg.is_hide_set()
}

/// The variable a [`Settings`] field is read from: the field's name in capitals.
///
/// Found from the name rather than the declared `env` because the checking pass removes the
/// environment from its arguments; a unit test holds the two together.
fn variable_of(arg: &clap::Arg) -> &'static str {
    let id = arg.get_id().as_str();
    VARIABLES
        .into_iter()
        .find(|variable| variable.eq_ignore_ascii_case(id))
        .unwrap_or("?")
}

/// Takes the [`ConfigError`] a [`Setting`] parser put into a clap error back out.
///
/// The arguments handed to clap are all declared flags with values, so nothing else can fail;
/// if it did, clap's own text is not shown, since it would quote a value that may be secret.
fn refusal_of(err: clap::Error) -> ConfigError {
    use std::error::Error as _;
    err.source()
        .and_then(|source| source.downcast_ref::<ConfigError>())
        .cloned()
        .unwrap_or_else(|| ConfigError {
            variable: "arguments",
            message: format!("the settings could not be combined ({:?})", err.kind()),
        })
}

/// A setting's value parser: a function that converts a value or refuses it with a message.
///
/// clap gives the parser the argument, which names the variable; the refusal travels inside
/// clap's error as a [`ConfigError`] and is taken back out by [`refusal_of`].
#[derive(Clone)]
struct Setting<F>(F);

/// Declares a setting's parser: `parse` gets the value (trimmed when it came from a variable)
/// and refuses it with a message that never shows a secret.
fn setting<T, F>(parse: F) -> Setting<F>
where
    F: Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static,
{
    Setting(parse)
}

impl<T, F> TypedValueParser for Setting<F>
where
    F: Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let variable = arg.map_or("?", variable_of);
        let parse = self.0.clone();
        // clap keeps the error of a parser made from a plain function as the source of its
        // own; that is the one public way to hand it ours.
        let checked =
            move |text: &str| parse(text).map_err(|message| ConfigError { variable, message });
        checked.parse_ref(command, arg, value)
    }
}

/// A whole number from `min` to `max`, refused as "'x' is not {what} from {min} to {max}".
fn whole<T>(
    min: T,
    max: T,
    what: &'static str,
) -> Setting<impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy + Send + Sync + 'static,
{
    setting(move |value: &str| {
        in_range(value, min, max)
            .ok_or_else(|| format!("{} is not {what} from {min} to {max}", quote(value)))
    })
}

fn in_range<T: std::str::FromStr + PartialOrd>(value: &str, min: T, max: T) -> Option<T> {
    value
        .parse::<T>()
        .ok()
        .filter(|number| (min..=max).contains(number))
}

fn database_url(value: &str) -> Result<DatabaseConfig, String> {
    DatabaseConfig::from_url(value).map_err(|err| err.message)
}

fn jwt_secret(value: &str) -> Result<JwtSecret, String> {
    JwtSecret::from_configured(value).map_err(|err| err.message)
}

fn jwt_algorithm(value: &str) -> Result<Algorithm, String> {
    // Case-insensitive, unlike python-jose: "hs256" has only one possible meaning, and the
    // accepted set stays HMAC-only either way.
    [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]
        .into_iter()
        .find(|algorithm| format!("{algorithm:?}").eq_ignore_ascii_case(value))
        .ok_or_else(|| {
            format!(
                "{} is not supported; use HS256, HS384 or HS512",
                quote(value)
            )
        })
}

fn expire_minutes(value: &str) -> Result<u32, String> {
    const A_YEAR: u32 = 525_600;
    in_range(value, 1, A_YEAR).ok_or_else(|| {
        format!(
            "{} is not a whole number of minutes from 1 to {A_YEAR} (a year)",
            quote(value)
        )
    })
}

fn host(value: &str) -> Result<String, String> {
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{} is not a host name or address: it contains whitespace or control characters",
            quote(value)
        ));
    }
    Ok(value.to_owned())
}

fn file_path(value: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(value))
}

/// HTTPS needs both files or neither; both must load and belong together, so that a mistake
/// stops start-up (and `check-config`) rather than the first handshake.
fn tls_files(
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
) -> Result<Option<TlsFiles>, ConfigError> {
    let missing = |variable: &'static str, other: &str| ConfigError {
        variable,
        message: format!(
            "it is not set, but {other} is: HTTPS needs both TLS_CERT_FILE and TLS_KEY_FILE \
             (set neither for plain HTTP)"
        ),
    };
    match (cert_file, key_file) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(missing("TLS_KEY_FILE", "TLS_CERT_FILE")),
        (None, Some(_)) => Err(missing("TLS_CERT_FILE", "TLS_KEY_FILE")),
        (Some(cert_file), Some(key_file)) => {
            let files = TlsFiles {
                cert_file,
                key_file,
            };
            check_tls(&files)?;
            Ok(Some(files))
        }
    }
}

#[cfg(feature = "tls")]
fn check_tls(files: &TlsFiles) -> Result<(), ConfigError> {
    crate::tls::check(files)
}

/// The edge build (without the `tls` feature) refuses the TLS files at start-up, naming the
/// build, rather than serving plain HTTP where HTTPS was asked for.
#[cfg(not(feature = "tls"))]
fn check_tls(_files: &TlsFiles) -> Result<(), ConfigError> {
    Err(ConfigError {
        variable: "TLS_CERT_FILE",
        message: crate::server::NO_TLS.to_owned(),
    })
}

fn on_off(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{} is neither on nor off", quote(value))),
    }
}

fn log_format(value: &str) -> Result<LogFormat, String> {
    match value.to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{} is neither text nor json", quote(value))),
    }
}

/// `host:port` with a port, as `METRICS_ADDR` takes it (an IPv6 address in brackets). The name
/// is resolved when the server binds it, like `HOST`.
fn metrics_addr(value: &str) -> Result<String, String> {
    split_host_port(value)
        .map(|_| value.to_owned())
        .ok_or_else(|| {
            format!(
                "{} is not host:port (such as 127.0.0.1:9100 or [::1]:9100)",
                quote(value)
            )
        })
}

/// The host (brackets taken off an IPv6 address) and port of `host:port`, or `None` when it is
/// not one: the one reading of `METRICS_ADDR`, for its check and for binding it.
pub(crate) fn split_host_port(value: &str) -> Option<(&str, u16)> {
    let (host, port) = value.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6
            .parse::<std::net::Ipv6Addr>()
            .is_ok()
            .then_some((v6, port)),
        None if !host.is_empty() && !host.contains(':') && self::host(host).is_ok() => {
            Some((host, port))
        }
        None => None,
    }
}

fn port(value: &str) -> Result<u16, String> {
    value
        .parse::<u16>()
        .map_err(|_| format!("{} is not a port number (0-65535)", quote(value)))
}

/// Reads every variable from the process environment layered over the dotenv file at `path`.
///
/// A non-empty process variable wins over the file; an empty one falls through to the file,
/// as empty means unset everywhere else. A missing file is fine; an unreadable or malformed
/// one is an error with variable `".env"`. Within the file the last assignment of a name
/// wins, as with python-dotenv. The process environment is never modified.
fn merge_env(
    process: impl Fn(&'static str) -> Result<Option<String>, ConfigError>,
    path: &Path,
) -> Result<HashMap<&'static str, (String, Source)>, ConfigError> {
    let file = read_dotenv(path)?;
    let mut merged = HashMap::new();
    for name in VARIABLES {
        let value = process(name)?
            .filter(|value| !value.trim().is_empty())
            .map(|value| (value, Source::Environment))
            .or_else(|| file.get(name).map(|value| (value.clone(), Source::DotEnv)));
        if let Some(value) = value {
            merged.insert(name, value);
        }
    }
    Ok(merged)
}

impl DatabaseConfig {
    /// Parses a `DATABASE_URL` in one of the SQLAlchemy SQLite spellings.
    ///
    /// `sqlite:///relative/path` gives `relative/path`, `sqlite:////absolute/path` gives
    /// `/absolute/path`; `sqlite+aiosqlite` and `sqlite+pysqlite` are accepted for `sqlite`, and
    /// the scheme is case-insensitive. The one query parameter accepted is `check_same_thread`,
    /// which the FastAPI tutorials put there and which means nothing here. In-memory databases
    /// and SQLite `file:` URIs are refused, as is every other scheme. Messages echo the URL
    /// only through [`redact_url`].
    pub fn from_url(url: &str) -> Result<DatabaseConfig, ConfigError> {
        let url = url.trim();
        let error = |message: String| ConfigError {
            variable: "DATABASE_URL",
            message,
        };
        let shown = || quote(&redact_url(url));

        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(error(format!(
                "{} is not a supported database URL; {SUPPORTED_DATABASE_URLS}",
                shown()
            )));
        };
        let scheme = scheme.to_ascii_lowercase();
        if POSTGRES_SCHEMES.contains(&scheme.as_str()) {
            return postgres_from_url(rest).map_err(|reason| {
                error(format!(
                    "{} is not a usable PostgreSQL URL: {reason}",
                    shown()
                ))
            });
        }
        if !SQLITE_SCHEMES.contains(&scheme.as_str()) {
            return Err(error(format!(
                "{} is not a supported database URL; {SUPPORTED_DATABASE_URLS}",
                shown()
            )));
        }
        if rest.is_empty() {
            // SQLAlchemy reads a bare `sqlite://` as an in-memory database.
            return Err(error(in_memory_refusal(&shown())));
        }
        let Some(path_and_query) = rest.strip_prefix('/') else {
            return Err(error(format!(
                "{} names a host, which SQLite has no use for; {SUPPORTED_DATABASE_URLS}",
                shown()
            )));
        };
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        for parameter in query.into_iter().flat_map(|q| q.split('&')) {
            let name = parameter.split('=').next().unwrap_or_default();
            if !(parameter.is_empty() || name == "check_same_thread") {
                return Err(error(format!(
                    "query parameter {} is not supported (only check_same_thread is accepted, \
                     and ignored)",
                    quote(name)
                )));
            }
        }
        if path.is_empty() {
            return Err(error(format!(
                "{} has no database path; {SUPPORTED_DATABASE_URLS}",
                shown()
            )));
        }
        if path == ":memory:" {
            return Err(error(in_memory_refusal(&shown())));
        }
        if path
            .get(..5)
            .is_some_and(|start| start.eq_ignore_ascii_case("file:"))
        {
            // SQLite opens with URI filenames enabled, so `file:` would reinterpret the path
            // (even as `mode=memory`) behind this check's back.
            return Err(error(format!(
                "{} is a SQLite URI filename, which is not supported; {SUPPORTED_DATABASE_URLS}",
                shown()
            )));
        }
        Ok(DatabaseConfig::Sqlite {
            path: PathBuf::from(path),
        })
    }
}

/// Checks the part of a PostgreSQL URL after `scheme://` with the driver's own parser, and
/// keeps it under the scheme the driver knows. The reason given never quotes the URL.
#[cfg(feature = "postgres")]
fn postgres_from_url(rest: &str) -> Result<DatabaseConfig, String> {
    let url = format!("postgresql://{rest}");
    let parsed: postgres::Config = url
        .parse()
        .map_err(|_| "the driver cannot parse it".to_owned())?;
    if parsed.get_hosts().is_empty() {
        return Err("it names no host".to_owned());
    }
    if parsed.get_dbname().is_none() {
        return Err("it names no database (…/database at the end)".to_owned());
    }
    Ok(DatabaseConfig::Postgres {
        url: PostgresUrl(url),
    })
}

/// The edge build (without the `postgres` feature) refuses PostgreSQL URLs at start-up, naming
/// the build rather than failing later on connect.
#[cfg(not(feature = "postgres"))]
fn postgres_from_url(_rest: &str) -> Result<DatabaseConfig, String> {
    Err(
        "this build has no PostgreSQL support (it was built without the `postgres` feature); \
         use the standard build, or a sqlite:/// URL"
            .to_owned(),
    )
}

fn in_memory_refusal(shown: &str) -> String {
    format!(
        "{shown} is an in-memory database, which is not supported: each pooled connection would \
         see its own empty database; {SUPPORTED_DATABASE_URLS}"
    )
}

impl JwtSecret {
    /// Checks a configured `JWT_SECRET` (already trimmed) and keeps its UTF-8 bytes as the key.
    ///
    /// The bytes are used as they are (hex is not decoded), as python-jose does, so tokens
    /// issued by the FastAPI service with the same secret stay valid.
    pub fn from_configured(secret: &str) -> Result<JwtSecret, ConfigError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(ConfigError {
                variable: "JWT_SECRET",
                message: format!(
                    "it must be at least {MIN_SECRET_BYTES} bytes long (it is {}); make one with \
                     `openssl rand -hex 32`",
                    secret.len()
                ),
            });
        }
        Ok(JwtSecret {
            bytes: secret.as_bytes().to_vec(),
            ephemeral: false,
        })
    }

    /// Generates a random key for this process only, marked `ephemeral`.
    pub fn generate() -> Result<JwtSecret, ConfigError> {
        let mut bytes = vec![0_u8; GENERATED_SECRET_BYTES];
        getrandom::fill(&mut bytes).map_err(|err| ConfigError {
            variable: "JWT_SECRET",
            message: format!(
                "it is unset and no random secret could be generated ({err}); set it, e.g. to \
                 the output of `openssl rand -hex 32`"
            ),
        })?;
        Ok(JwtSecret {
            bytes,
            ephemeral: true,
        })
    }
}

/// Returns `url` with any password replaced by `***`, for use in messages and logs.
///
/// Masks the userinfo password (`scheme://user:***@host`) and the value of any query parameter
/// whose name suggests a secret (`password`, `sslpassword`, `pass`, `pwd`, `secret`, …). The
/// userinfo password is taken to run from the first `:` after the user name to the *last* `@`,
/// so a password holding unescaped `@`, `/` or `?` is still hidden whole; this errs towards
/// hiding too much (say `host:***@x` for `host:5432/db?a=b@x`), never too little. Strings that
/// are not URLs at all come back unchanged unless they look like `user:secret@host`.
///
/// ```
/// use backnd_api::redact_url;
///
/// assert_eq!(
///     redact_url("postgresql://app:hunter2@db.internal:5432/users"),
///     "postgresql://app:***@db.internal:5432/users"
/// );
/// assert_eq!(redact_url("sqlite:///./db.sqlite3"), "sqlite:///./db.sqlite3");
/// ```
pub fn redact_url(url: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let (head, rest) = url.split_at(authority_start);
    let mut out = String::with_capacity(url.len());
    out.push_str(head);

    let user_end = rest.find([':', '/', '@', '?', '#']).unwrap_or(rest.len());
    let after_userinfo = match (rest[user_end..].starts_with(':'), rest.rfind('@')) {
        (true, Some(at)) if at > user_end => {
            out.push_str(&rest[..=user_end]);
            out.push_str("***");
            &rest[at..]
        }
        _ => rest,
    };

    match after_userinfo.split_once('?') {
        None => out.push_str(after_userinfo),
        Some((before, query)) => {
            out.push_str(before);
            out.push('?');
            for (i, parameter) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match parameter.split_once('=') {
                    Some((name, _)) if looks_secret(name) => {
                        out.push_str(name);
                        out.push_str("=***");
                    }
                    _ => out.push_str(parameter),
                }
            }
        }
    }
    out
}

fn looks_secret(parameter_name: &str) -> bool {
    let name = parameter_name.to_ascii_lowercase();
    name.contains("pass") || name.contains("secret") || name == "pwd" || name.contains("token")
}

/// Returns the default `WORKERS`: four threads per available core, at least 8, at most 1024.
///
/// Handlers spend most of their time in bcrypt or waiting on SQLite, so a few threads per
/// core keep the CPU busy; the floor keeps small machines responsive while one thread hashes.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .saturating_mul(4)
        .clamp(MIN_DEFAULT_WORKERS, MAX_WORKERS)
}

/// Returns the default `MAX_CONNECTIONS` for a process allowed `open_files` descriptors that
/// keeps `database_connections` database connections: every descriptor not needed elsewhere,
/// since each connection holds one (and a thread). Running out of descriptors would leave new
/// clients waiting unanswered in the listen queue; refusing them at this limit answers them.
pub fn default_max_connections(open_files: u64, database_connections: usize) -> usize {
    let database = DESCRIPTORS_PER_DATABASE_CONNECTION.saturating_mul(database_connections as u64);
    let free = open_files
        .saturating_sub(RESERVED_DESCRIPTORS)
        .saturating_sub(database);
    usize::try_from(free)
        .unwrap_or(usize::MAX)
        .clamp(1, MAX_MAX_CONNECTIONS)
}

/// Returns the default `HASH_THREADS`: one per available core.
pub fn default_hash_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn process_var(name: &'static str) -> Result<Option<String>, ConfigError> {
    match std::env::var(name) {
        Ok(value) => Ok(Some(value)),
        Err(VarError::NotPresent) => Ok(None),
        Err(VarError::NotUnicode(_)) => Err(ConfigError {
            variable: name,
            message: "the value in the process environment is not valid UTF-8".to_owned(),
        }),
    }
}

/// Reads a dotenv file into a map without touching the process environment.
fn read_dotenv(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let env_file_error = |message: String| ConfigError {
        variable: ".env",
        message,
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(err) => {
            return Err(env_file_error(format!(
                "could not read {}: {err}",
                path.display()
            )))
        }
    };
    // Read the bytes ourselves rather than via `from_path_iter`: that one keeps a leading BOM
    // (only `load` strips it), and having the text lets a parse error name its line.
    let content = bytes.strip_prefix(UTF8_BOM).unwrap_or(&bytes);
    let mut values = HashMap::new();
    for item in dotenvy::from_read_iter(content) {
        match item {
            Ok((name, value)) => {
                values.insert(name, value);
            }
            Err(dotenvy::Error::LineParse(line, index)) => {
                return Err(env_file_error(describe_malformed_line(
                    path, content, &line, index,
                )))
            }
            Err(err) => {
                return Err(env_file_error(format!(
                    "could not read {}: {err}",
                    path.display()
                )))
            }
        }
    }
    Ok(values)
}

/// Says where a dotenv line is malformed without quoting it: the line may hold a secret.
fn describe_malformed_line(path: &Path, content: &[u8], line: &str, index: usize) -> String {
    let first_line = line.lines().next().unwrap_or_default();
    let text = String::from_utf8_lossy(content);
    let line_number = Some(first_line)
        .filter(|l| !l.trim().is_empty())
        .and_then(|l| text.find(l))
        .map(|offset| text[..offset].matches('\n').count() + 1);
    let name = first_line
        .trim_start()
        .trim_start_matches("export ")
        .split('=')
        .next()
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));

    let mut message = format!("{} could not be parsed", path.display());
    if let Some(number) = line_number {
        message.push_str(&format!(" at line {number}"));
    }
    if let Some(name) = name {
        message.push_str(&format!(" (setting {name})"));
    }
    if index < first_line.len() {
        let column = first_line.get(..index).map_or(index, |s| s.chars().count()) + 1;
        message.push_str(&format!(", column {column}"));
    } else {
        // dotenvy reports an error at the very end when a quote or escape never closes.
        message.push_str(", which looks like an unterminated quote or escape");
    }
    message.push_str(" (the line is not shown because it may hold a secret)");
    message
}

/// Quotes a value for a message, escaping control characters so they can't garble a terminal.
pub(crate) fn quote(value: &str) -> String {
    const MAX_SHOWN: usize = 200;
    let shown: String = value.chars().take(MAX_SHOWN).collect();
    let ellipsis = if shown.len() < value.len() { "…" } else { "" };
    format!("'{}{ellipsis}'", shown.escape_debug())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::Algorithm;

    const SECRET_32: &str = "0123456789abcdef0123456789abcdef";

    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(lookup(pairs))
    }

    fn refusal(pairs: &[(&str, &str)]) -> ConfigError {
        match config(pairs) {
            Ok(config) => panic!("expected a refusal for {pairs:?}, got {config:?}"),
            Err(err) => err,
        }
    }

    fn sqlite_path(url: &str) -> PathBuf {
        match DatabaseConfig::from_url(url) {
            Ok(DatabaseConfig::Sqlite { path }) => path,
            Ok(other) => panic!("expected {url} to be SQLite, got {other:?}"),
            Err(err) => panic!("expected {url} to be accepted, got {err}"),
        }
    }

    #[cfg(feature = "postgres")]
    fn postgres_url(url: &str) -> PostgresUrl {
        match DatabaseConfig::from_url(url) {
            Ok(DatabaseConfig::Postgres { url }) => url,
            Ok(other) => panic!("expected {url} to be PostgreSQL, got {other:?}"),
            Err(err) => panic!("expected {url} to be accepted, got {err}"),
        }
    }

    fn database_refusal(url: &str) -> String {
        match DatabaseConfig::from_url(url) {
            Ok(database) => panic!("expected {url} to be refused, got {database:?}"),
            Err(err) => {
                assert_eq!(err.variable, "DATABASE_URL");
                err.to_string()
            }
        }
    }

    // ---- defaults ----

    #[test]
    fn every_variable_unset_gives_the_documented_defaults() {
        let config = config(&[]).unwrap();
        assert_eq!(
            config.database,
            DatabaseConfig::Sqlite {
                path: PathBuf::from("./db.sqlite3")
            }
        );
        assert!(config.jwt_secret.ephemeral);
        assert_eq!(config.jwt_secret.bytes.len(), 32);
        assert_eq!(config.jwt_algorithm, Algorithm::HS256);
        assert_eq!(config.access_token_expire_minutes, 60);
        assert_eq!(config.host, "127.0.0.1");
        assert_eq!(config.port, 8000);
        assert_eq!(config.workers, default_workers());
        assert_eq!(config.bcrypt_cost, 12);
        assert_eq!(config.log_filter, None);
        assert_eq!(config.hash_threads, default_hash_threads());
        assert_eq!(config.hash_queue_size, 64);
        assert_eq!(
            config.hash_queue_timeout,
            std::time::Duration::from_secs(10)
        );
        assert_eq!(config.max_connections, None);
        assert_eq!(config.max_connections_per_client, None);
        assert_eq!(config.idle_timeout, std::time::Duration::from_secs(30));
        assert_eq!(config.header_timeout, std::time::Duration::from_secs(10));
        assert_eq!(config.body_timeout, std::time::Duration::from_secs(10));
        assert_eq!(config.write_timeout, std::time::Duration::from_secs(10));
        assert_eq!(config.cors_origins, CorsOrigins::None);
    }

    #[test]
    fn cors_origins_are_read_and_a_bad_one_is_refused_by_name() {
        let set = config(&[(
            "CORS_ORIGINS",
            "https://app.example.com, http://localhost:3000",
        )]);
        assert_eq!(
            set.unwrap().cors_origins,
            CorsOrigins::List(vec![
                "https://app.example.com".to_owned(),
                "http://localhost:3000".to_owned()
            ])
        );
        assert_eq!(
            config(&[("CORS_ORIGINS", "*")]).unwrap().cors_origins,
            CorsOrigins::Any
        );
        let err = refusal(&[("CORS_ORIGINS", "https://app.example.com/")]);
        assert_eq!(err.variable, "CORS_ORIGINS");
        assert!(
            err.to_string()
                .starts_with("invalid CORS_ORIGINS: 'https://app.example.com/' is not an origin"),
            "{err}"
        );
    }

    #[test]
    fn the_connection_limits_are_read_and_bounded() {
        let set = config(&[
            ("MAX_CONNECTIONS", "50"),
            ("MAX_CONNECTIONS_PER_CLIENT", "10"),
            ("IDLE_TIMEOUT", "5"),
            ("HEADER_TIMEOUT", "2"),
            ("BODY_TIMEOUT", "3"),
            ("WRITE_TIMEOUT", "4"),
        ])
        .unwrap();
        assert_eq!(set.max_connections, Some(50));
        assert_eq!(set.max_connections_per_client, Some(10));
        assert_eq!(set.idle_timeout, std::time::Duration::from_secs(5));
        assert_eq!(set.header_timeout, std::time::Duration::from_secs(2));
        assert_eq!(set.body_timeout, std::time::Duration::from_secs(3));
        assert_eq!(set.write_timeout, std::time::Duration::from_secs(4));
        for (name, value) in [
            ("MAX_CONNECTIONS", "0"),
            ("MAX_CONNECTIONS", "lots"),
            ("MAX_CONNECTIONS_PER_CLIENT", "0"),
            ("IDLE_TIMEOUT", "0"),
            ("HEADER_TIMEOUT", "1.5"),
            ("BODY_TIMEOUT", "-1"),
            ("WRITE_TIMEOUT", "3601"),
        ] {
            let err = refusal(&[(name, value)]);
            assert_eq!(err.variable, name);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn the_default_connection_limit_leaves_descriptors_for_everything_else() {
        // 20,000 descriptors, 10 SQLite connections of 3 each, 64 kept back.
        assert_eq!(default_max_connections(20_000, 10), 19_906);
        assert_eq!(default_max_connections(1024, 10), 930);
        // A tiny limit still allows one connection rather than none.
        assert_eq!(default_max_connections(16, 10), 1);
        assert_eq!(default_max_connections(u64::MAX, 10), 1_000_000);
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn a_build_without_tls_refuses_the_tls_files_by_name() {
        let err = refusal(&[
            ("TLS_CERT_FILE", "/etc/ssl/cert.pem"),
            ("TLS_KEY_FILE", "/etc/ssl/key.pem"),
        ]);
        assert_eq!(err.variable, "TLS_CERT_FILE");
        assert!(err.message.contains("without the `tls` feature"), "{err}");
    }

    #[cfg(feature = "tls")]
    #[test]
    fn https_needs_both_tls_files_and_files_that_can_be_read() {
        assert_eq!(config(&[]).unwrap().tls, None);
        let err = refusal(&[("TLS_CERT_FILE", "/etc/ssl/cert.pem")]);
        assert_eq!(err.variable, "TLS_KEY_FILE");
        assert!(err.message.contains("HTTPS needs both"), "{err}");
        let err = refusal(&[("TLS_KEY_FILE", "/etc/ssl/key.pem")]);
        assert_eq!(err.variable, "TLS_CERT_FILE");
        let err = refusal(&[
            ("TLS_CERT_FILE", "/nonexistent/cert.pem"),
            ("TLS_KEY_FILE", "/nonexistent/key.pem"),
        ]);
        assert_eq!(err.variable, "TLS_CERT_FILE");
        assert!(
            err.message
                .starts_with("cannot read '/nonexistent/cert.pem'"),
            "{err}"
        );
    }

    #[test]
    fn the_hashing_pool_settings_are_read_and_bounded() {
        let set = config(&[
            ("HASH_THREADS", "3"),
            ("HASH_QUEUE_SIZE", "0"),
            ("HASH_QUEUE_TIMEOUT", "2"),
        ])
        .unwrap();
        assert_eq!(set.hash_threads, 3);
        assert_eq!(set.hash_queue_size, 0);
        assert_eq!(set.hash_queue_timeout, std::time::Duration::from_secs(2));
        for (name, value) in [
            ("HASH_THREADS", "0"),
            ("HASH_THREADS", "many"),
            ("HASH_QUEUE_SIZE", "-1"),
            ("HASH_QUEUE_TIMEOUT", "0"),
        ] {
            let err = refusal(&[(name, value)]);
            assert_eq!(err.variable, name);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn empty_and_blank_values_count_as_unset() {
        let pairs: Vec<(&str, &str)> = VARIABLES
            .iter()
            .enumerate()
            .map(|(i, name)| (*name, if i % 2 == 0 { "" } else { "  \t " }))
            .collect();
        let config = config(&pairs).unwrap();
        assert!(config.jwt_secret.ephemeral);
        assert_eq!(config.port, 8000);
        assert_eq!(config.host, "127.0.0.1");
        assert_eq!(config.log_filter, None);
        assert_eq!(config.access_token_expire_minutes, 60);
    }

    #[test]
    fn default_workers_is_four_per_core_between_8_and_1024() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(default_workers(), (cores * 4).clamp(8, 1024));
        assert!((8..=1024).contains(&default_workers()));
    }

    #[test]
    fn surrounding_whitespace_is_trimmed_from_every_value() {
        let config = config(&[
            ("DATABASE_URL", "  sqlite:///x.db \n"),
            ("JWT_SECRET", &format!(" {SECRET_32}\t")),
            ("JWT_ALGORITHM", " HS512 "),
            ("JWT_ACCESS_TOKEN_EXPIRE_MINUTES", " 30 "),
            ("HOST", " 0.0.0.0 "),
            ("PORT", " 9000 "),
            ("WORKERS", " 3 "),
            ("BCRYPT_COST", " 10 "),
            ("RUST_LOG", " debug "),
        ])
        .unwrap();
        assert_eq!(
            config.database,
            DatabaseConfig::Sqlite {
                path: PathBuf::from("x.db")
            }
        );
        assert_eq!(config.jwt_secret.bytes, SECRET_32.as_bytes());
        assert_eq!(config.jwt_algorithm, Algorithm::HS512);
        assert_eq!(config.access_token_expire_minutes, 30);
        assert_eq!(config.host, "0.0.0.0");
        assert_eq!(config.port, 9000);
        assert_eq!(config.workers, 3);
        assert_eq!(config.bcrypt_cost, 10);
        assert_eq!(config.log_filter.as_deref(), Some("debug"));
    }

    // ---- DATABASE_URL ----

    #[test]
    fn three_slashes_give_a_relative_path() {
        assert_eq!(
            sqlite_path("sqlite:///relative/path"),
            PathBuf::from("relative/path")
        );
        assert_eq!(
            sqlite_path("sqlite:///./db.sqlite3"),
            PathBuf::from("./db.sqlite3")
        );
        assert_eq!(
            sqlite_path("sqlite:///db.sqlite3"),
            PathBuf::from("db.sqlite3")
        );
    }

    #[test]
    fn four_slashes_give_an_absolute_path() {
        assert_eq!(
            sqlite_path("sqlite:////absolute/path"),
            PathBuf::from("/absolute/path")
        );
        assert_eq!(
            sqlite_path("sqlite:////tmp/db.sqlite3"),
            PathBuf::from("/tmp/db.sqlite3")
        );
    }

    #[test]
    fn async_and_explicit_driver_spellings_are_accepted() {
        assert_eq!(
            sqlite_path("sqlite+aiosqlite:///./db.sqlite3"),
            PathBuf::from("./db.sqlite3")
        );
        assert_eq!(
            sqlite_path("sqlite+aiosqlite:////var/db"),
            PathBuf::from("/var/db")
        );
        assert_eq!(
            sqlite_path("sqlite+pysqlite:///app.db"),
            PathBuf::from("app.db")
        );
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        assert_eq!(sqlite_path("SQLite:///app.db"), PathBuf::from("app.db"));
        assert_eq!(
            sqlite_path("SQLITE+AIOSQLITE:///app.db"),
            PathBuf::from("app.db")
        );
    }

    #[test]
    fn database_url_from_lookup_is_used() {
        let config = config(&[("DATABASE_URL", "sqlite+aiosqlite:////srv/users.db")]).unwrap();
        assert_eq!(
            config.database,
            DatabaseConfig::Sqlite {
                path: PathBuf::from("/srv/users.db")
            }
        );
    }

    #[test]
    fn check_same_thread_query_parameter_is_accepted_and_ignored() {
        assert_eq!(
            sqlite_path("sqlite:///./app.db?check_same_thread=False"),
            PathBuf::from("./app.db")
        );
        assert_eq!(sqlite_path("sqlite:///app.db?"), PathBuf::from("app.db"));
    }

    #[test]
    fn other_query_parameters_are_refused_by_name() {
        let message = database_refusal("sqlite:///app.db?mode=ro");
        assert!(message.contains("'mode'"), "{message}");
        let message = database_refusal("sqlite:///app.db?check_same_thread=0&uri=true");
        assert!(message.contains("'uri'"), "{message}");
    }

    #[test]
    fn an_empty_database_path_is_refused() {
        let message = database_refusal("sqlite:///");
        assert!(message.contains("no database path"), "{message}");
        assert!(database_refusal("sqlite:///?check_same_thread=false").contains("no database path"));
    }

    #[test]
    fn in_memory_databases_are_refused() {
        for url in [
            "sqlite:///:memory:",
            "sqlite://",
            "sqlite+aiosqlite:///:memory:",
        ] {
            let message = database_refusal(url);
            assert!(message.contains("in-memory"), "{url}: {message}");
            assert!(message.contains("pooled connection"), "{url}: {message}");
        }
    }

    #[test]
    fn sqlite_uri_filenames_are_refused() {
        let message = database_refusal("sqlite:///file::memory:");
        assert!(message.contains("URI filename"), "{message}");
        assert!(database_refusal("sqlite:///FILE:app.db").contains("URI filename"));
    }

    #[test]
    fn a_sqlite_url_with_a_host_is_refused() {
        let message = database_refusal("sqlite://localhost/app.db");
        assert!(message.contains("names a host"), "{message}");
        assert!(message.contains("sqlite:///relative/path"), "{message}");
    }

    #[test]
    fn other_schemes_are_refused_naming_the_supported_forms() {
        for url in [
            "mysql://root@localhost/app",
            "http://example.com/db",
            "sqlite3:///app.db",
            "db.sqlite3",
            "./db.sqlite3",
        ] {
            let message = database_refusal(url);
            assert!(message.starts_with("invalid DATABASE_URL: "), "{message}");
            assert!(message.contains("sqlite:///relative/path"), "{message}");
            assert!(message.contains("sqlite:////absolute/path"), "{message}");
            assert!(message.contains("sqlite+aiosqlite://"), "{message}");
            assert!(message.contains("postgresql://"), "{message}");
        }
    }

    #[cfg(not(feature = "postgres"))]
    #[test]
    fn a_build_without_postgresql_refuses_its_urls_by_name_without_the_password() {
        let err = database_refusal("postgresql+asyncpg://app:hunter2@db:5432/users");
        assert!(err.contains("without the `postgres` feature"), "{err}");
        assert!(
            err.contains("'postgresql+asyncpg://app:***@db:5432/users'"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgresql_urls_in_every_sqlalchemy_spelling_select_postgresql() {
        for (url, expected) in [
            (
                "postgresql://app@localhost:5432/app",
                "postgresql://app@localhost:5432/app",
            ),
            ("postgres://app@db/app", "postgresql://app@db/app"),
            (
                "postgresql+asyncpg://app:pw@db/app",
                "postgresql://app:pw@db/app",
            ),
            (
                "postgresql+psycopg2://app@db/app",
                "postgresql://app@db/app",
            ),
            ("POSTGRESQL://app@db/app", "postgresql://app@db/app"),
        ] {
            assert_eq!(postgres_url(url).expose(), expected, "{url}");
        }
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn a_postgresql_url_without_a_host_or_database_is_refused() {
        assert!(database_refusal("postgresql://app@/app").contains("no host"));
        assert!(database_refusal("postgresql://app@db").contains("no database"));
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn a_postgresql_password_never_shows_in_debug_or_display() {
        let url = postgres_url("postgresql://app:hunter2secret@db:5432/app");
        let config = config(&[("DATABASE_URL", "postgresql://app:hunter2secret@db:5432/app")])
            .expect("accepted");
        for shown in [format!("{url:?}"), url.to_string(), format!("{config:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
    }

    #[test]
    fn pool_size_and_connect_timeout_have_defaults_and_bounds() {
        let defaults = config(&[]).expect("defaults");
        assert_eq!(defaults.database_pool_size, 10);
        assert_eq!(
            defaults.database_connect_timeout,
            std::time::Duration::from_secs(5)
        );
        let set = config(&[
            ("DATABASE_POOL_SIZE", "3"),
            ("DATABASE_CONNECT_TIMEOUT", "2"),
        ])
        .expect("accepted");
        assert_eq!(set.database_pool_size, 3);
        assert_eq!(
            set.database_connect_timeout,
            std::time::Duration::from_secs(2)
        );
        for (name, value) in [
            ("DATABASE_POOL_SIZE", "0"),
            ("DATABASE_POOL_SIZE", "many"),
            ("DATABASE_CONNECT_TIMEOUT", "0"),
            ("DATABASE_CONNECT_TIMEOUT", "-1"),
        ] {
            let err = refusal(&[(name, value)]);
            assert_eq!(err.variable, name);
        }
    }

    #[test]
    fn a_refused_url_never_shows_its_password() {
        for url in [
            "postgresql://app:hunter2secret@localhost:5432",
            "mysql://root:hunter2secret@db/app",
            "postgresql://app@/app?password=hunter2secret",
            "sqlite://app:hunter2secret@localhost/app.db",
        ] {
            let err = DatabaseConfig::from_url(url).unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
            assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
            assert!(err.to_string().contains("***"), "{err}");
        }
    }

    #[test]
    fn database_refusals_come_through_from_lookup() {
        let err = refusal(&[("DATABASE_URL", "mysql://u:pw12345678@h/db")]);
        assert_eq!(err.variable, "DATABASE_URL");
        assert!(!err.to_string().contains("pw12345678"));
    }

    // ---- redact_url ----

    #[test]
    fn redact_url_masks_the_userinfo_password() {
        assert_eq!(
            redact_url("postgresql://user:secret@host:5432/db"),
            "postgresql://user:***@host:5432/db"
        );
        assert_eq!(
            redact_url("mysql://:secret@host/db"),
            "mysql://:***@host/db"
        );
    }

    #[test]
    fn redact_url_hides_passwords_holding_url_delimiters() {
        assert_eq!(
            redact_url("postgresql://u:p@ss@host/db"),
            "postgresql://u:***@host/db"
        );
        assert_eq!(
            redact_url("postgresql://u:pa/ss@host/db"),
            "postgresql://u:***@host/db"
        );
        assert_eq!(
            redact_url("postgresql://u:pa?ss#x@host/db"),
            "postgresql://u:***@host/db"
        );
        assert_eq!(
            redact_url("postgresql://u:p%40ss@host/db"),
            "postgresql://u:***@host/db"
        );
    }

    #[test]
    fn redact_url_leaves_urls_without_a_password_alone() {
        for url in [
            "sqlite:///./db.sqlite3",
            "sqlite:////abs/db",
            "postgresql://user@host/db",
            "postgresql://host:5432/db",
            "http://example.com/a:b",
            "not a url",
            "",
            "postgresql://host/db?sslmode=require",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn redact_url_masks_secret_query_parameters() {
        assert_eq!(
            redact_url("postgresql://u@h/db?sslmode=require&password=secret&PassWord=x"),
            "postgresql://u@h/db?sslmode=require&password=***&PassWord=***"
        );
        assert_eq!(
            redact_url("postgresql://u:a@h/db?sslpassword=s"),
            "postgresql://u:***@h/db?sslpassword=***"
        );
    }

    #[test]
    fn redact_url_masks_a_userinfo_password_even_without_a_scheme() {
        assert_eq!(redact_url("user:secret@host/db"), "user:***@host/db");
    }

    #[test]
    fn redact_url_errs_towards_hiding_too_much() {
        let redacted = redact_url("postgresql://host:5432/db?application_name=a@b");
        assert_eq!(redacted, "postgresql://host:***@b");
    }

    #[test]
    fn redact_url_handles_multibyte_text_without_panicking() {
        assert_eq!(redact_url("pg://ü:ß€@h/δ"), "pg://ü:***@h/δ");
        assert_eq!(redact_url("€://:@"), "€://:***@");
        assert_eq!(redact_url("://"), "://");
        assert_eq!(redact_url("@:?&="), "@:?&=");
    }

    // ---- JWT_SECRET ----

    #[test]
    fn an_unset_secret_is_generated_and_marked_ephemeral() {
        let first = config(&[]).unwrap().jwt_secret;
        let second = config(&[("JWT_SECRET", "")]).unwrap().jwt_secret;
        assert!(first.ephemeral && second.ephemeral);
        assert_eq!(first.bytes.len(), 32);
        assert_ne!(
            first.bytes, second.bytes,
            "two generated secrets should differ"
        );
    }

    #[test]
    fn a_secret_of_exactly_32_bytes_is_accepted_as_its_utf8_bytes() {
        let secret = config(&[("JWT_SECRET", SECRET_32)]).unwrap().jwt_secret;
        assert!(!secret.ephemeral);
        assert_eq!(secret.bytes, SECRET_32.as_bytes());
    }

    #[test]
    fn a_hex_secret_is_used_as_text_not_decoded() {
        let hex = "a".repeat(64);
        let secret = config(&[("JWT_SECRET", &hex)]).unwrap().jwt_secret;
        assert_eq!(secret.bytes.len(), 64);
    }

    #[test]
    fn secret_length_is_counted_in_bytes_not_characters() {
        let sixteen_e_acute = "é".repeat(16);
        assert!(config(&[("JWT_SECRET", &sixteen_e_acute)]).is_ok());
        let err = refusal(&[("JWT_SECRET", &"é".repeat(15))]);
        assert!(err.message.contains("it is 30"), "{err}");
    }

    #[test]
    fn a_secret_of_31_bytes_is_refused_with_how_to_make_one() {
        let short = &SECRET_32[..31];
        let err = refusal(&[("JWT_SECRET", short)]);
        assert_eq!(err.variable, "JWT_SECRET");
        let message = err.to_string();
        assert!(message.starts_with("invalid JWT_SECRET: "), "{message}");
        assert!(message.contains("at least 32 bytes"), "{message}");
        assert!(message.contains("openssl rand -hex 32"), "{message}");
        assert!(!message.contains(short), "{message}");
        assert!(!format!("{err:?}").contains(short));
    }

    #[test]
    fn the_secret_never_appears_in_config_debug_output() {
        let config = config(&[("JWT_SECRET", SECRET_32)]).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains(SECRET_32), "{debug}");
        assert!(!debug.contains("0123456789"), "{debug}");
        assert!(debug.contains("JwtSecret(<redacted>)"), "{debug}");
    }

    // ---- JWT_ALGORITHM ----

    #[test]
    fn hmac_algorithms_are_accepted_in_any_case() {
        for (value, expected) in [
            ("HS256", Algorithm::HS256),
            ("HS384", Algorithm::HS384),
            ("HS512", Algorithm::HS512),
            ("hs256", Algorithm::HS256),
            ("Hs512", Algorithm::HS512),
        ] {
            let config = config(&[("JWT_ALGORITHM", value)]).unwrap();
            assert_eq!(config.jwt_algorithm, expected, "{value}");
        }
    }

    #[test]
    fn non_hmac_algorithms_are_refused_naming_the_allowed_ones() {
        for value in ["RS256", "none", "ES256", "HS1024", "EdDSA", "HS 256"] {
            let err = refusal(&[("JWT_ALGORITHM", value)]);
            assert_eq!(err.variable, "JWT_ALGORITHM");
            let message = err.to_string();
            assert!(message.starts_with("invalid JWT_ALGORITHM: "), "{message}");
            assert!(message.contains("HS256, HS384 or HS512"), "{message}");
        }
    }

    // ---- JWT_ACCESS_TOKEN_EXPIRE_MINUTES ----

    #[test]
    fn expiry_accepts_whole_minutes_from_one_to_a_year() {
        for (value, expected) in [
            ("1", 1),
            ("60", 60),
            ("525600", 525_600),
            ("+5", 5),
            ("007", 7),
        ] {
            let config = config(&[("JWT_ACCESS_TOKEN_EXPIRE_MINUTES", value)]).unwrap();
            assert_eq!(config.access_token_expire_minutes, expected, "{value}");
        }
    }

    #[test]
    fn expiry_refuses_zero_negative_fractional_huge_and_text() {
        for value in ["0", "-5", "1.5", "abc", "525601", "99999999999", "1e3"] {
            let err = refusal(&[("JWT_ACCESS_TOKEN_EXPIRE_MINUTES", value)]);
            assert_eq!(err.variable, "JWT_ACCESS_TOKEN_EXPIRE_MINUTES");
            let message = err.to_string();
            assert!(
                message.starts_with("invalid JWT_ACCESS_TOKEN_EXPIRE_MINUTES: "),
                "{message}"
            );
            assert!(message.contains(&format!("'{value}'")), "{message}");
            assert!(message.contains("1 to 525600"), "{message}");
        }
    }

    // ---- HOST ----

    #[test]
    fn host_accepts_names_and_addresses() {
        for value in ["0.0.0.0", "::1", "localhost", "api.example.com", "[::]"] {
            assert_eq!(config(&[("HOST", value)]).unwrap().host, value);
        }
    }

    #[test]
    fn host_with_inner_whitespace_or_control_characters_is_refused() {
        for value in ["local host", "a\tb", "a\u{0}b"] {
            let err = refusal(&[("HOST", value)]);
            assert_eq!(err.variable, "HOST");
            assert!(err.to_string().starts_with("invalid HOST: "), "{err}");
        }
    }

    #[test]
    fn host_refusal_escapes_control_characters() {
        let err = refusal(&[("HOST", "a\u{1b}[2Jb")]);
        assert!(!err.message.contains('\u{1b}'), "{err}");
        assert!(err.message.contains("\\u{1b}"), "{err}");
    }

    // ---- TRUSTED_PROXIES, RATE_LIMITS and the limits ----

    #[test]
    fn limits_are_on_by_default_at_small_deployment_values() {
        let config = config(&[]).unwrap();
        assert!(config.trusted_proxies.is_empty());
        let limits = &config.rate_limits;
        assert!(limits.enabled);
        assert_eq!(limits.login_lock_after, 5);
        assert_eq!(limits.login_failures_per_account, 100);
        assert_eq!(limits.login_failure_window, Duration::from_secs(3600));
        assert_eq!(limits.registrations_per_client, 10);
        assert_eq!(config.hash_jobs_per_client, None);
    }

    #[test]
    fn rate_limits_is_on_or_off_and_nothing_else() {
        assert!(
            !config(&[("RATE_LIMITS", "off")])
                .unwrap()
                .rate_limits
                .enabled
        );
        assert!(
            config(&[("RATE_LIMITS", "ON")])
                .unwrap()
                .rate_limits
                .enabled
        );
        let err = refusal(&[("RATE_LIMITS", "false")]);
        assert_eq!(err.variable, "RATE_LIMITS");
        assert!(err.message.contains("neither on nor off"), "{err}");
    }

    #[test]
    fn trusted_proxies_take_addresses_and_ranges_and_refuse_anything_else() {
        let config = config(&[("TRUSTED_PROXIES", "10.0.0.0/8, ::1")]).unwrap();
        assert!(config.trusted_proxies.contains("10.2.3.4".parse().unwrap()));
        assert!(!config.trusted_proxies.contains("11.0.0.1".parse().unwrap()));
        let err = refusal(&[("TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal")]);
        assert_eq!(err.variable, "TRUSTED_PROXIES");
        assert!(err.message.contains("proxy.internal"), "{err}");
    }

    #[test]
    fn limits_out_of_range_are_refused() {
        for (variable, value) in [
            ("LOGIN_LOCK_AFTER", "0"),
            ("LOGIN_FAILURES_PER_ACCOUNT", "0"),
            ("LOGIN_FAILURE_WINDOW", "0"),
            ("REGISTRATIONS_PER_CLIENT", "-1"),
            ("HASH_JOBS_PER_CLIENT", "0"),
        ] {
            assert_eq!(refusal(&[(variable, value)]).variable, variable);
        }
    }

    // ---- sessions ----

    #[test]
    fn session_lifetimes_default_to_30_days_and_10_seconds_within_their_ranges() {
        let defaults = config(&[]).unwrap();
        assert_eq!(
            defaults.refresh_token_lifetime,
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(defaults.refresh_reuse_grace, Duration::from_secs(10));
        let set = config(&[
            ("JWT_REFRESH_TOKEN_EXPIRE_DAYS", "3650"),
            ("REFRESH_REUSE_GRACE", "0"),
        ])
        .unwrap();
        assert_eq!(
            set.refresh_token_lifetime,
            Duration::from_secs(3650 * 86_400)
        );
        assert_eq!(set.refresh_reuse_grace, Duration::ZERO);
        for (variable, value) in [
            ("JWT_REFRESH_TOKEN_EXPIRE_DAYS", "0"),
            ("JWT_REFRESH_TOKEN_EXPIRE_DAYS", "3651"),
            ("JWT_REFRESH_TOKEN_EXPIRE_DAYS", "1.5"),
            ("REFRESH_REUSE_GRACE", "3601"),
            ("REFRESH_REUSE_GRACE", "-1"),
        ] {
            let err = refusal(&[(variable, value)]);
            assert_eq!(err.variable, variable);
            assert!(err.message.contains(&format!("'{value}'")), "{err}");
        }
    }

    // ---- PORT ----

    #[test]
    fn port_accepts_zero_through_65535() {
        for (value, expected) in [("0", 0), ("1", 1), ("8080", 8080), ("65535", 65535)] {
            assert_eq!(config(&[("PORT", value)]).unwrap().port, expected);
        }
    }

    #[test]
    fn port_refuses_text_negatives_and_values_above_65535() {
        let err = refusal(&[("PORT", "abc")]);
        assert_eq!(
            err.to_string(),
            "invalid PORT: 'abc' is not a port number (0-65535)"
        );
        for value in ["65536", "-1", "80.0", "99999999999999999999"] {
            let err = refusal(&[("PORT", value)]);
            assert_eq!(err.variable, "PORT");
            assert!(err.to_string().contains("0-65535"), "{err}");
        }
    }

    // ---- WORKERS ----

    #[test]
    fn workers_accepts_1_through_1024() {
        for (value, expected) in [("1", 1), ("16", 16), ("1024", 1024)] {
            assert_eq!(config(&[("WORKERS", value)]).unwrap().workers, expected);
        }
    }

    #[test]
    fn workers_refuses_zero_too_many_and_text() {
        for value in ["0", "1025", "-1", "many"] {
            let err = refusal(&[("WORKERS", value)]);
            assert_eq!(err.variable, "WORKERS");
            let message = err.to_string();
            assert!(message.starts_with("invalid WORKERS: "), "{message}");
            assert!(message.contains("1 to 1024"), "{message}");
        }
    }

    // ---- BCRYPT_COST ----

    #[test]
    fn bcrypt_cost_accepts_4_through_31() {
        for (value, expected) in [("4", 4), ("12", 12), ("31", 31)] {
            assert_eq!(
                config(&[("BCRYPT_COST", value)]).unwrap().bcrypt_cost,
                expected
            );
        }
    }

    #[test]
    fn bcrypt_cost_outside_4_to_31_is_refused() {
        for value in ["3", "32", "0", "-12", "twelve"] {
            let err = refusal(&[("BCRYPT_COST", value)]);
            assert_eq!(err.variable, "BCRYPT_COST");
            let message = err.to_string();
            assert!(message.starts_with("invalid BCRYPT_COST: "), "{message}");
            assert!(message.contains("4 to 31"), "{message}");
        }
    }

    // ---- RUST_LOG ----

    #[test]
    fn rust_log_is_passed_through_unvalidated() {
        let config = config(&[("RUST_LOG", "backnd_api=debug,tiny_http=warn,???")]).unwrap();
        assert_eq!(
            config.log_filter.as_deref(),
            Some("backnd_api=debug,tiny_http=warn,???")
        );
    }

    // ---- errors ----

    #[test]
    fn config_error_is_a_std_error_displayed_as_invalid_variable() {
        let err = ConfigError {
            variable: "PORT",
            message: "'x' is not a port number (0-65535)".to_owned(),
        };
        let boxed: Box<dyn std::error::Error> = Box::new(err);
        assert_eq!(
            boxed.to_string(),
            "invalid PORT: 'x' is not a port number (0-65535)"
        );
    }

    #[test]
    fn the_first_bad_variable_in_check_order_is_reported() {
        let err = refusal(&[
            ("PORT", "x"),
            ("BCRYPT_COST", "99"),
            ("JWT_ALGORITHM", "RS256"),
        ]);
        assert_eq!(err.variable, "JWT_ALGORITHM");
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let long = "9".repeat(10_000);
        let err = refusal(&[("PORT", &long)]);
        assert!(err.message.len() < 400, "{}", err.message.len());
        assert!(err.message.contains('…'));
    }

    // ---- .env and layering ----

    fn dotenv_file(content: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, content).unwrap();
        (dir, path)
    }

    fn no_process_vars(_: &'static str) -> Result<Option<String>, ConfigError> {
        Ok(None)
    }

    /// The configuration from `process` variables layered over the dotenv file at `path`, as
    /// `main` reads it when there are no flags.
    fn from_layers(
        process: impl Fn(&'static str) -> Result<Option<String>, ConfigError>,
        path: &Path,
    ) -> Result<Config, ConfigError> {
        let merged = merge_env(process, path)?;
        Config::from_lookup(|name| merged.get(name).map(|(value, _)| value.clone()))
    }

    #[test]
    fn a_missing_dotenv_file_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let values = read_dotenv(&dir.path().join(".env")).unwrap();
        assert!(values.is_empty());
        let config = from_layers(no_process_vars, &dir.path().join(".env")).unwrap();
        assert_eq!(config.port, 8000);
    }

    #[test]
    fn dotenv_values_are_read_with_quotes_comments_and_export() {
        let (_dir, path) = dotenv_file(
            b"# comment\nPORT=9001\nexport HOST=0.0.0.0\nJWT_SECRET=\"0123456789abcdef0123456789abcdef\"\n\
              RUST_LOG='info' # trailing\n",
        );
        let values = read_dotenv(&path).unwrap();
        assert_eq!(values.get("PORT").map(String::as_str), Some("9001"));
        assert_eq!(values.get("HOST").map(String::as_str), Some("0.0.0.0"));
        assert_eq!(
            values.get("JWT_SECRET").map(String::as_str),
            Some(SECRET_32)
        );
        assert_eq!(values.get("RUST_LOG").map(String::as_str), Some("info"));
    }

    #[test]
    fn the_last_assignment_in_dotenv_wins_as_in_python_dotenv() {
        let (_dir, path) = dotenv_file(b"PORT=1\nPORT=2\n");
        assert_eq!(
            read_dotenv(&path).unwrap().get("PORT").map(String::as_str),
            Some("2")
        );
    }

    #[test]
    fn a_leading_byte_order_mark_in_dotenv_is_ignored() {
        let (_dir, path) = dotenv_file(b"\xEF\xBB\xBFPORT=9002\r\nHOST=::1\r\n");
        let values = read_dotenv(&path).unwrap();
        assert_eq!(values.get("PORT").map(String::as_str), Some("9002"));
        assert_eq!(values.get("HOST").map(String::as_str), Some("::1"));
    }

    #[test]
    fn a_malformed_dotenv_names_the_line_but_never_shows_it() {
        let (_dir, path) = dotenv_file(b"PORT=1\n\nJWT_SECRET=topsecretvalue 'oops\nHOST=x\n");
        let err = read_dotenv(&path).unwrap_err();
        assert_eq!(err.variable, ".env");
        let message = err.to_string();
        assert!(message.starts_with("invalid .env: "), "{message}");
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("JWT_SECRET"), "{message}");
        assert!(!message.contains("topsecret"), "{message}");
    }

    #[test]
    fn a_dotenv_line_without_a_name_is_reported_with_its_column() {
        let (_dir, path) = dotenv_file(b"PORT=1\n=value\n");
        let message = read_dotenv(&path).unwrap_err().to_string();
        assert!(message.contains("line 2"), "{message}");
        assert!(message.contains("column 1"), "{message}");
        assert!(!message.contains("value"), "{message}");
    }

    #[test]
    fn a_malformed_dotenv_stops_from_layers() {
        let (_dir, path) = dotenv_file(b"not a valid line\n");
        let err = from_layers(no_process_vars, &path).unwrap_err();
        assert_eq!(err.variable, ".env");
    }

    #[test]
    fn a_dotenv_that_is_not_utf8_is_refused() {
        let (_dir, path) = dotenv_file(b"PORT=\xFF\xFE\n");
        let err = read_dotenv(&path).unwrap_err();
        assert_eq!(err.variable, ".env");
    }

    #[test]
    fn an_unreadable_dotenv_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_dotenv(dir.path()).unwrap_err();
        assert_eq!(err.variable, ".env");
        assert!(err.message.contains("could not read"), "{err}");
    }

    #[test]
    fn process_variables_win_over_dotenv() {
        let (_dir, path) = dotenv_file(b"PORT=9001\nHOST=0.0.0.0\n");
        let process = |name: &'static str| Ok((name == "PORT").then(|| "9100".to_owned()));
        let config = from_layers(process, &path).unwrap();
        assert_eq!(config.port, 9100);
        assert_eq!(config.host, "0.0.0.0");
    }

    #[test]
    fn an_empty_process_variable_falls_through_to_dotenv() {
        let (_dir, path) = dotenv_file(b"PORT=9001\n");
        let process = |name: &'static str| Ok((name == "PORT").then(|| " ".to_owned()));
        assert_eq!(from_layers(process, &path).unwrap().port, 9001);
    }

    #[test]
    fn dotenv_values_are_validated_like_any_other() {
        let (_dir, path) = dotenv_file(b"JWT_SECRET=short\n");
        let err = from_layers(no_process_vars, &path).unwrap_err();
        assert_eq!(err.variable, "JWT_SECRET");
        assert!(!err.to_string().contains("short"));
    }

    #[test]
    fn a_process_variable_that_is_not_utf8_is_reported_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let process = |name: &'static str| {
            if name == "HOST" {
                Err(ConfigError {
                    variable: name,
                    message: "not utf-8".to_owned(),
                })
            } else {
                Ok(None)
            }
        };
        let err = from_layers(process, &dir.path().join(".env")).unwrap_err();
        assert_eq!(err.variable, "HOST");
    }

    // ---- declarations, flags and --help ----

    #[test]
    fn the_declarations_are_the_variables_in_check_order() {
        let command = Settings::command();
        let declared: Vec<&clap::Arg> = command.get_arguments().collect();
        assert_eq!(declared.len(), VARIABLES.len());
        for (arg, variable) in declared.into_iter().zip(VARIABLES) {
            assert_eq!(arg.get_env(), Some(OsStr::new(variable)));
            assert_eq!(variable_of(arg), variable);
            let flag = variable.to_ascii_lowercase().replace('_', "-");
            assert_eq!(arg.get_long(), Some(flag.as_str()));
        }
    }

    #[test]
    fn help_lists_every_variable_its_default_and_the_footer() {
        let help = Config::command("Routes: GET /x").render_help().to_string();
        for variable in VARIABLES {
            assert!(help.contains(variable), "{variable} missing from {help}");
        }
        assert!(help.contains("--port <PORT>"), "{help}");
        assert!(help.contains("[default: 8000]"), "{help}");
        assert!(help.contains("[default: sqlite:///./db.sqlite3]"), "{help}");
        assert!(!help.contains("--jwt-secret"), "{help}");
        assert!(help.trim_end().ends_with("Routes: GET /x"), "{help}");
    }

    #[test]
    fn the_readme_and_env_example_document_every_variable() {
        let readme = include_str!("../README.md");
        let example = include_str!("../.env.example");
        for variable in VARIABLES {
            assert!(
                readme.contains(&format!("`{variable}`")),
                "README: {variable}"
            );
            assert!(
                example.contains(&format!("{variable}=")),
                ".env.example: {variable}"
            );
        }
    }

    fn from_args(args: &[&str], dotenv: &[u8]) -> Result<Config, ArgsError> {
        let (_dir, path) = dotenv_file(dotenv);
        let args = std::iter::once("backnd-api").chain(args.iter().copied());
        Config::from_sources(args, "", no_process_vars, &path).map(|invocation| invocation.config)
    }

    fn args_refusal(args: &[&str], dotenv: &[u8]) -> ConfigError {
        match from_args(args, dotenv) {
            Err(ArgsError::Config(err)) => err,
            other => panic!("expected a refusal for {args:?}, got {other:?}"),
        }
    }

    fn command_line_error(args: &[&str]) -> clap::Error {
        match from_args(args, b"not a valid line\n") {
            Err(ArgsError::CommandLine(err)) => err,
            other => panic!("expected clap to answer {args:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_flag_wins_over_the_environment_and_dotenv() {
        let config = from_args(
            &[
                "--port",
                "9100",
                "--host=0.0.0.0",
                "--hash-queue-timeout",
                "3",
            ],
            b"PORT=9001\nHOST=::1\nWORKERS=3\n",
        )
        .unwrap();
        assert_eq!(config.port, 9100);
        assert_eq!(config.host, "0.0.0.0");
        assert_eq!(config.hash_queue_timeout, Duration::from_secs(3));
        assert_eq!(config.workers, 3);
    }

    #[test]
    fn setting_flags_are_read_before_and_after_a_subcommand() {
        let (_dir, path) = dotenv_file(b"PORT=9001\n");
        for args in [
            &["backnd-api", "--port", "9100", "check-config"][..],
            &["backnd-api", "check-config", "--port", "9100"],
        ] {
            let invocation = Config::from_sources(args.iter().copied(), "", no_process_vars, &path)
                .unwrap_or_else(|err| panic!("{args:?}: {err:?}"));
            assert!(
                matches!(invocation.command, Some(crate::cli::Command::CheckConfig)),
                "{args:?}"
            );
            assert_eq!(invocation.config.port, 9100, "{args:?}");
        }
        let serve = Config::from_sources(["backnd-api"], "", no_process_vars, &path).unwrap();
        assert!(serve.command.is_none());
        assert_eq!(serve.config.port, 9001);
    }

    #[test]
    fn each_setting_is_shown_with_its_source_and_secrets_masked() {
        let (_dir, path) =
            dotenv_file(b"PORT=9001\nDATABASE_URL=postgresql://app:hunter2@db/app\n");
        let process = |name: &'static str| {
            Ok(match name {
                "JWT_SECRET" => Some(SECRET_32.to_owned()),
                "HOST" => Some("0.0.0.0".to_owned()),
                _ => None,
            })
        };
        let args = ["backnd-api", "--workers", "3"];
        let shown = match Config::from_sources(args, "", process, &path) {
            Ok(invocation) => invocation.settings,
            // The edge build refuses the PostgreSQL URL; the rest is the same on both.
            Err(ArgsError::Config(err)) if !cfg!(feature = "postgres") => {
                assert_eq!(err.variable, "DATABASE_URL");
                return;
            }
            Err(err) => panic!("{err:?}"),
        };
        assert_eq!(shown.len(), VARIABLES.len());
        let of = |variable: &str| {
            let setting = shown.iter().find(|s| s.variable == variable).unwrap();
            (setting.value.as_str(), setting.source)
        };
        assert_eq!(of("JWT_SECRET"), ("<set, 32 bytes>", Source::Environment));
        assert_eq!(of("HOST"), ("0.0.0.0", Source::Environment));
        assert_eq!(of("PORT"), ("9001", Source::DotEnv));
        assert_eq!(of("WORKERS"), ("3", Source::Flag));
        assert_eq!(of("BCRYPT_COST"), ("12", Source::Default));
        assert_eq!(of("MAX_CONNECTIONS"), ("<unset>", Source::Default));
        assert_eq!(
            of("DATABASE_URL"),
            ("postgresql://app:***@db/app", Source::DotEnv)
        );
        for setting in &shown {
            assert!(!setting.value.contains("hunter2") && !setting.value.contains(SECRET_32));
        }
    }

    #[test]
    fn a_value_a_flag_overrides_is_never_checked() {
        let config = from_args(&["--port", "9100"], b"PORT=not-a-port\n").unwrap();
        assert_eq!(config.port, 9100);
    }

    #[test]
    fn a_bad_flag_is_refused_like_its_variable() {
        let err = args_refusal(&["--port", "abc"], b"");
        assert_eq!(
            err.to_string(),
            "invalid PORT: 'abc' is not a port number (0-65535)"
        );
        let err = args_refusal(&["--database-url=mysql://u:hunter2@h/db"], b"");
        assert_eq!(err.variable, "DATABASE_URL");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn bad_flags_and_variables_are_reported_in_check_order() {
        let err = args_refusal(&["--workers", "0"], b"JWT_ALGORITHM=RS256\n");
        assert_eq!(err.variable, "JWT_ALGORITHM");
        let err = args_refusal(&["--jwt-algorithm", "RS256"], b"WORKERS=0\n");
        assert_eq!(err.variable, "JWT_ALGORITHM");
    }

    #[test]
    fn the_jwt_secret_is_refused_as_a_flag_without_being_shown() {
        let err = args_refusal(&["--jwt-secret", SECRET_32], b"");
        assert_eq!(err.variable, "JWT_SECRET");
        assert!(err.message.contains("environment or .env"), "{err}");
        assert!(!err.to_string().contains(SECRET_32), "{err}");
    }

    #[test]
    fn help_version_and_unknown_arguments_are_answered_before_dotenv_is_read() {
        for (args, kind, code) in [
            (&["--help"][..], clap::error::ErrorKind::DisplayHelp, 0),
            (&["-h"][..], clap::error::ErrorKind::DisplayHelp, 0),
            (
                &["--version"][..],
                clap::error::ErrorKind::DisplayVersion,
                0,
            ),
            (&["--bogus"][..], clap::error::ErrorKind::UnknownArgument, 2),
            (&["stray"][..], clap::error::ErrorKind::InvalidSubcommand, 2),
            (&["--port"][..], clap::error::ErrorKind::InvalidValue, 2),
        ] {
            let err = command_line_error(args);
            assert_eq!((err.kind(), err.exit_code()), (kind, code), "{args:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_flag_that_is_not_utf8_is_reported_by_name() {
        use std::os::unix::ffi::OsStringExt;
        let (_dir, path) = dotenv_file(b"");
        let args = [
            OsString::from("backnd-api"),
            OsString::from("--host"),
            OsString::from_vec(b"\xFF".to_vec()),
        ];
        match Config::from_sources(args, "", no_process_vars, &path) {
            Err(ArgsError::Config(err)) => assert_eq!(err.variable, "HOST"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn process_var_reads_an_unset_variable_as_none() {
        assert_eq!(
            process_var("BACKND_API_TEST_VARIABLE_THAT_IS_NEVER_SET").unwrap(),
            None
        );
    }
}
