//! backnd-api: user registration and login over HTTP, keeping the FastAPI service's contract.
//!
//! [`spawn`] starts the whole service from a [`Config`]; `main` and the tests both go through
//! it. The modules are private: what `main`, the tests and the benchmarks use is re-exported
//! here.
#![forbid(unsafe_code)]

mod body;
pub mod cli;
mod client;
mod config;
mod cors;
mod db;
mod error;
mod fields;
mod hashing;
mod http;
mod logging;
mod metrics;
mod openapi;
mod routes;
mod security;
mod server;
mod sessions;
mod state;
mod throttle;
#[cfg(feature = "tls")]
mod tls;

pub use config::{
    redact_url, ArgsError, Config, DatabaseConfig, Invocation, ShownSetting, Source, TlsFiles,
    VARIABLES,
};
pub use db::{Db, NewUserRow, PoolOptions};
pub use logging::init as init_logging;
pub use routes::summary as route_summary;
pub use security::{hash_password, verify_password, PasswordCheck, TokenKeys};
pub use server::{spawn, Server, StartError};
