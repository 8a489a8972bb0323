//! The `backnd-api` binary: reads the configuration (flags, the environment, `.env`), starts
//! logging, serves until SIGINT or SIGTERM, then shuts down gracefully and exits 0. SIGHUP
//! reloads the HTTPS certificate; without HTTPS it stops the server as SIGTERM does (as it
//! always did: a terminal that closes sends it). A subcommand (`user`, `backup`, `migrate`,
//! `healthcheck`, `check-config`) runs instead of serving, on the same configuration (see
//! `backnd_api::cli`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use backnd_api::{ArgsError, Config, Invocation};

fn main() -> ExitCode {
    // `--help` ends with what the service answers, from the route table.
    let routes = format!("Routes:\n{}", backnd_api::route_summary());
    let routes = format!("{routes}\n{}", backnd_api::cli::EXIT_CODES_HELP);
    let Invocation {
        config,
        command,
        settings,
    } = match Config::load(std::env::args_os(), &routes) {
        Ok(invocation) => invocation,
        // --help and --version print to stdout and exit 0; a malformed command line exits 2.
        Err(ArgsError::CommandLine(err)) => err.exit(),
        Err(ArgsError::Config(err)) => {
            eprintln!("backnd-api: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(command) = command {
        // Only warnings by default: the command's own output is what the operator reads.
        backnd_api::init_logging(&config, "warn");
        return backnd_api::cli::run(command, &config, &settings);
    }
    backnd_api::init_logging(&config, "info");

    // Each connection holds a descriptor, so the usual soft limit of 1024 caps concurrent
    // clients far below what the machine allows; MAX_CONNECTIONS is derived from the raised one.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => log::debug!("open-file limit: {limit}"),
        Err(err) => log::warn!("could not raise the open-file limit: {err}"),
    }

    // Installed before serving, so that a signal during start-up waits here rather than
    // killing the process.
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(signals) => signals,
        Err(err) => {
            log::error!("cannot install the signal handlers: {err}");
            return ExitCode::FAILURE;
        }
    };

    let server = match backnd_api::spawn(&config) {
        Ok(server) => server,
        Err(err) => {
            log::error!("{err}");
            return ExitCode::FAILURE;
        }
    };
    for signal in signals.forever() {
        if signal == SIGHUP && server.serves_https() {
            server.reload_certificate();
            continue;
        }
        break;
    }
    log::info!("stopping: finishing requests in flight");
    server.shutdown();
    log::info!("stopped");
    ExitCode::SUCCESS
}
