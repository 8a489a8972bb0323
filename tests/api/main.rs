//! Integration tests: the real server over real HTTP, a fresh database per test.

mod helpers;
mod testdb;

mod concurrency;
mod docs;
mod errors;
mod fixture;
mod hashing;
mod health;
mod instances;
mod login;
mod me;
mod outage;
mod register;
mod shutdown;
