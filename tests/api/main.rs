//! Integration tests: the real server over real HTTP, a fresh database per test.

mod helpers;
mod log_capture;
mod testdb;

mod account;
mod concurrency;
mod constraints;
mod cors;
mod database_file;
mod docs;
mod errors;
mod fixture;
mod front_door;
mod hashing;
mod headers;
mod health;
mod identity;
mod instances;
mod login;
mod me;
mod metrics;
mod outage;
mod register;
mod rehash;
mod sessions;
mod shutdown;
mod slow_clients;
mod throttle;
