//! Measures how many bcrypt verifications one thread completes per second at a given cost:
//! the machine's login ceiling is this rate times its cores. `make bench` runs it.
//!
//! Usage: `cargo run --release --example bcrypt_rate -- [COST] [SECONDS]` (defaults 12 and 3).

use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let cost: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(12);
    let seconds: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3.0);
    let hash = bcrypt::hash("benchmark-password", cost).expect("cost is within 4..=31");
    let budget = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut verified = 0u64;
    while started.elapsed() < budget {
        assert_eq!(bcrypt::verify("benchmark-password", &hash).ok(), Some(true));
        verified += 1;
    }
    println!("{:.3}", verified as f64 / started.elapsed().as_secs_f64());
}
