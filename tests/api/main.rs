//! Integration tests: the real server over real HTTP, a fresh database per test.

mod helpers;
mod log_capture;
mod testdb;

mod concurrency;
mod constraints;
mod docs;
mod errors;
mod fixture;
mod front_door;
mod hashing;
mod health;
mod instances;
mod login;
mod me;
mod outage;
mod register;
mod shutdown;
mod slow_clients;
mod throttle;
