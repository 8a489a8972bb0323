//! backnd-api: user registration and login over HTTP, keeping the FastAPI service's contract.
//!
//! [`spawn`] starts the whole service from a [`Config`]; `main` and the tests both go through
//! it.
#![forbid(unsafe_code)]

pub mod config;
pub mod db;
pub mod error;
pub mod hashing;
pub mod http;
pub mod openapi;
pub mod routes;
pub mod schemas;
pub mod security;
pub mod server;
pub mod state;

pub use config::Config;
pub use server::{spawn, Server, StartError};
