//! Integration tests: the real server over real HTTP, a fresh database per test.

mod helpers;

mod concurrency;
mod errors;
mod fixture;
mod health;
mod login;
mod me;
mod register;
mod shutdown;
