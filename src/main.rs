//! The `backnd-api` binary: reads the configuration, starts logging, serves until SIGINT or
//! SIGTERM, then shuts down gracefully and exits 0.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use backnd_api::Config;

const HELP: &str = "\
backnd-api: user registration and login service (the FastAPI backnd-api contract)

Usage: backnd-api [--help | --version]

Configuration comes from the environment and from a .env file in the working directory
(the environment wins):
  DATABASE_URL                     sqlite:///./db.sqlite3 (default), sqlite:////absolute/path
                                   or postgresql://user:password@host:5432/database
  DATABASE_POOL_SIZE               PostgreSQL connections per instance, default 10
  DATABASE_CONNECT_TIMEOUT         seconds to wait for a database connection, default 5
  JWT_SECRET                       at least 32 bytes (openssl rand -hex 32); unset: random per process
  JWT_ALGORITHM                    HS256 (default), HS384 or HS512
  JWT_ACCESS_TOKEN_EXPIRE_MINUTES  token lifetime, default 60
  HOST, PORT                       listen address, default 127.0.0.1 and 8000
  WORKERS                          requests handled at once, default 4 per core (at least 8)
  BCRYPT_COST                      4-31, default 12
  HASH_THREADS                     threads computing bcrypt hashes, default one per core
  HASH_QUEUE_SIZE                  hashes that may wait for a thread (then 503), default 64
  HASH_QUEUE_TIMEOUT               seconds within which a hash is answered (else 503), default 10
  MAX_CONNECTIONS                  connections open at once (then 503), default: what the
                                   open-file limit leaves
  MAX_CONNECTIONS_PER_CLIENT       connections one address (IPv6: /64) may hold, default half
                                   of MAX_CONNECTIONS
  IDLE_TIMEOUT                     seconds a connection may wait for its next request, default 30
  HEADER_TIMEOUT                   seconds for a whole request head (else 408), default 10
  BODY_TIMEOUT                     seconds for a whole request body (else 408), default 10
  WRITE_TIMEOUT                    seconds for writing a whole response (else dropped), default 10
  RUST_LOG                         log filter, default info (e.g. warn, debug, access=off)

Routes: POST /auth/register, POST /auth/login, GET /auth/me, GET /health
";

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("-h" | "--help") => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("backnd-api {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("backnd-api: unknown argument '{other}' (try --help)");
            return ExitCode::from(2);
        }
    }

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("backnd-api: {err}");
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::new()
        .parse_filters(config.log_filter.as_deref().unwrap_or("info"))
        .init();

    // Each connection holds a descriptor, so the usual soft limit of 1024 caps concurrent
    // clients far below what the machine allows; MAX_CONNECTIONS is derived from the raised one.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => log::debug!("open-file limit: {limit}"),
        Err(err) => log::warn!("could not raise the open-file limit: {err}"),
    }

    let (stop_tx, stop_rx) = std::sync::mpsc::channel();
    if let Err(err) = ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    }) {
        log::error!("cannot install the signal handler: {err}");
        return ExitCode::FAILURE;
    }

    let server = match backnd_api::spawn(&config) {
        Ok(server) => server,
        Err(err) => {
            log::error!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let _ = stop_rx.recv();
    log::info!("stopping: finishing requests in flight");
    server.shutdown();
    log::info!("stopped");
    ExitCode::SUCCESS
}
