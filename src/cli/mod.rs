//! The administration subcommands of the one binary (`backnd-api user …`, `backup`, `migrate`,
//! `healthcheck`, `check-config`): their declarations (clap derives `--help` from them), what
//! each prints, and its exit code. They run on the configuration serving would use, and reach
//! the database only through [`crate::db`]; no SQL lives here.
//!
//! Exit codes, the same for every subcommand: [`EXIT_OK`] (0), [`EXIT_FAILED`] (1: the
//! operation failed, e.g. the database is unreachable or missing, the user is not found, the
//! email is taken, the server is unhealthy) and [`EXIT_USAGE`] (2: the command line, the
//! configuration or the input is invalid, e.g. a malformed email or a short password).

mod healthcheck;
mod user;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{Config, DatabaseConfig, ShownSetting};
use crate::db::transfer::{self, ImportError};
use crate::db::{Db, DbError, PoolOptions};

/// Success.
pub const EXIT_OK: u8 = 0;
/// The operation failed: the database is unreachable or missing, the user is not found, the
/// email is taken, the counts disagree, the server is not healthy.
pub const EXIT_FAILED: u8 = 1;
/// The command line, the configuration or the input is invalid.
pub const EXIT_USAGE: u8 = 2;

/// What `--help` says after the subcommand list.
pub const EXIT_CODES_HELP: &str = "Exit codes: 0 success; 1 the operation failed (database \
     unreachable or missing, user not found, email taken, counts differ, server unhealthy); \
     2 invalid command line, configuration or input.";

/// The subcommands. With none, the binary serves.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create, list, show, change the password of, or delete users on the configured database
    #[command(subcommand, after_help = EXIT_CODES_HELP)]
    User(user::UserCommand),

    /// Copy the SQLite database to PATH while the server runs (SQLite's online backup API),
    /// and check the copy with PRAGMA integrity_check. For PostgreSQL, use pg_dump.
    #[command(after_help = EXIT_CODES_HELP)]
    Backup {
        /// Where to write the copy; written beside it first and renamed into place, so a
        /// failed backup leaves no partial file
        path: PathBuf,
        /// Replace PATH if it exists (by default an existing file is refused)
        #[arg(long)]
        force: bool,
    },

    /// Copy every user, email key, session and token cutoff from the configured database
    /// into another (SQLite to PostgreSQL or back), keeping ids, password hashes and
    /// timestamps, in one transaction on the target; then count both sides. Stop the server
    /// first: rows written during the copy make the counts differ. Failed-login counters
    /// are not copied.
    #[command(after_help = EXIT_CODES_HELP)]
    Migrate {
        /// The database to copy into, as DATABASE_URL spells it (the password is never shown)
        #[arg(long, value_name = "DATABASE_URL")]
        to: String,
        /// Copy into a database that holds rows already; a user whose id or email is there
        /// already is still refused (nothing is merged or overwritten)
        #[arg(long)]
        allow_non_empty: bool,
    },

    /// Ask the running server's /health (at HOST and PORT; a wildcard HOST asks loopback;
    /// over HTTPS when TLS_CERT_FILE is set): exit 0 when it answers 200 {"status":"ok"}
    /// within 3 seconds, else 1, saying why
    #[command(after_help = EXIT_CODES_HELP)]
    Healthcheck,

    /// Check the configuration as serving would, and print every setting with its source
    /// (secrets masked); exit 2 on any problem
    #[command(after_help = EXIT_CODES_HELP)]
    CheckConfig,
}

/// Why a subcommand stopped: printed as one line on stderr, with its exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Invalid input or usage: exit 2.
    Usage(String),
    /// The operation failed: exit 1.
    Failed(String),
}

impl From<DbError> for Failure {
    fn from(err: DbError) -> Failure {
        Failure::Failed(err.to_string())
    }
}

/// Runs `command` under `config` (`settings` as configured, for `check-config`), printing its
/// results on stdout and any failure on stderr, and returns its exit code.
pub fn run(command: Command, config: &Config, settings: &[ShownSetting]) -> ExitCode {
    let result = match command {
        Command::User(command) => user::run(command, config),
        Command::Backup { path, force } => backup(config, &path, force),
        Command::Migrate {
            to,
            allow_non_empty,
        } => migrate(config, &to, allow_non_empty),
        Command::Healthcheck => healthcheck::run(config),
        Command::CheckConfig => check_config(config, settings),
    };
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(Failure::Usage(message)) => {
            eprintln!("backnd-api: {message}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Failed(message)) => {
            eprintln!("backnd-api: {message}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Opens `database` for an administration command: a small pool, and a SQLite file that must
/// exist unless `create` (a typo in DATABASE_URL must not quietly become a new, empty database).
pub(crate) fn open(
    database: &DatabaseConfig,
    config: &Config,
    create: bool,
) -> Result<Db, Failure> {
    if let DatabaseConfig::Sqlite { path } = database {
        if !create && !path.is_file() {
            return Err(Failure::Failed(format!(
                "the database file {} does not exist (check DATABASE_URL and the working \
                 directory; the server creates it when it first starts)",
                path.display()
            )));
        }
    }
    let pool = PoolOptions {
        max_connections: 2,
        connect_timeout: config.database_connect_timeout,
    };
    Ok(Db::open(database, pool)?)
}

fn backup(config: &Config, dest: &Path, force: bool) -> Result<(), Failure> {
    let path = match &config.database {
        DatabaseConfig::Sqlite { path } => path,
        DatabaseConfig::Postgres { url } => {
            return Err(Failure::Usage(format!(
                "backup copies SQLite databases only; for PostgreSQL use pg_dump, e.g.\n  \
                 pg_dump --format=custom --file=backnd-api.dump '{}'\n\
                 with the password in PGPASSWORD or ~/.pgpass rather than on the command line",
                without_password(url.expose())
            )))
        }
    };
    // The backup's own refusals (an existing file, a missing directory) read as they are.
    let report = crate::db::backup_sqlite(path, dest, force).map_err(|err| match err {
        DbError::Other(message) => Failure::Failed(message),
        other => Failure::from(other),
    })?;
    println!(
        "backed up {} to {}: {} bytes, {} user{}, integrity_check ok{}",
        path.display(),
        dest.display(),
        report.bytes,
        report.users,
        if report.users == 1 { "" } else { "s" },
        match report.restarts {
            0 => String::new(),
            n => format!(" ({n} restarts: the server wrote during the copy)"),
        }
    );
    Ok(())
}

/// A PostgreSQL URL with no password at all (not even `***`), for a command line to copy.
fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_password(None);
            crate::config::redact_url(parsed.as_str())
        }
        Err(_) => crate::config::redact_url(url),
    }
}

fn migrate(config: &Config, to: &str, allow_non_empty: bool) -> Result<(), Failure> {
    let target = DatabaseConfig::from_url(to)
        .map_err(|err| Failure::Usage(format!("--to: {}", err.message)))?;
    if same_database(&config.database, &target) {
        return Err(Failure::Usage(
            "--to names the configured database itself; give another one".to_owned(),
        ));
    }
    let source = open(&config.database, config, false)?;
    let target_db = open(&target, config, true)?;
    let migrated =
        transfer::migrate(&source, &target_db, allow_non_empty).map_err(|err| match err {
            ImportError::NotEmpty(_) => Failure::Failed(format!(
                "{err} (give --allow-non-empty to copy into it anyway)"
            )),
            other => Failure::Failed(other.to_string()),
        })?;
    println!(
        "copied from {} to {}",
        describe(&config.database),
        describe(&target)
    );
    println!("  read from the source:  {}", migrated.copied);
    println!("  target before:         {}", migrated.target_before);
    println!("  target after:          {}", migrated.target_after);
    println!("  source after:          {}", migrated.source_after);
    if !migrated.is_whole() {
        return Err(Failure::Failed(
            "the counts differ: the target did not gain exactly the rows read, or the source \
             changed during the copy (was a server writing to it?); check the target before \
             using it"
                .to_owned(),
        ));
    }
    println!("counts agree");
    Ok(())
}

/// Whether two configurations name the same database (SQLite paths compared as files).
fn same_database(a: &DatabaseConfig, b: &DatabaseConfig) -> bool {
    match (a, b) {
        (DatabaseConfig::Sqlite { path: a }, DatabaseConfig::Sqlite { path: b }) => {
            match (a.canonicalize(), b.canonicalize()) {
                (Ok(a), Ok(b)) => a == b,
                _ => a == b,
            }
        }
        (a, b) => a == b,
    }
}

/// A database for messages: a SQLite path, or a PostgreSQL URL without its password.
fn describe(database: &DatabaseConfig) -> String {
    match database {
        DatabaseConfig::Sqlite { path } => format!("SQLite {}", path.display()),
        DatabaseConfig::Postgres { url } => format!("PostgreSQL {url}"),
    }
}

fn check_config(config: &Config, settings: &[ShownSetting]) -> Result<(), Failure> {
    let width = settings
        .iter()
        .map(|setting| setting.variable.len())
        .max()
        .unwrap_or(0);
    for setting in settings {
        println!(
            "{:width$}  {}  ({})",
            setting.variable, setting.value, setting.source
        );
    }
    let problems = database_problems(&config.database);
    if problems.is_empty() {
        println!("configuration ok");
        return Ok(());
    }
    Err(Failure::Usage(problems.join("; ")))
}

/// Cheap checks serving would otherwise fail at start: a SQLite file's directory must exist
/// and be writable (SQLite writes its journal beside the file). PostgreSQL is not contacted:
/// `healthcheck` or `user list` do that.
fn database_problems(database: &DatabaseConfig) -> Vec<String> {
    let DatabaseConfig::Sqlite { path } = database else {
        return Vec::new();
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return vec![format!(
            "invalid DATABASE_URL: the directory {} of the database does not exist",
            dir.display()
        )];
    }
    // Creating a file is the one sure test of "writable" (permissions, ACLs, read-only mounts).
    let probe = dir.join(format!(".backnd-api-check-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Vec::new()
        }
        Err(err) => vec![format!(
            "invalid DATABASE_URL: the directory {} of the database is not writable: {err}",
            dir.display()
        )],
    }
}
