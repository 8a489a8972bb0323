//! Micro-benchmarks of the costs under every request: bcrypt, access tokens, and the SQL each
//! route runs (on SQLite, the default). `make bench` runs them; `cargo bench` alone does too.

use std::time::Duration;

use backnd_api::DatabaseConfig;
use backnd_api::{hash_password, verify_password, TokenKeys};
use backnd_api::{Db, NewUserRow, PoolOptions};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

fn bcrypt(c: &mut Criterion) {
    let mut group = c.benchmark_group("bcrypt");
    for cost in [4, 10, 12] {
        if cost >= 10 {
            group.sample_size(10);
        }
        let hash = hash_password("benchmark-password", cost).expect("hash");
        group.bench_function(format!("verify cost {cost}"), |b| {
            b.iter(|| verify_password("benchmark-password", Some(&hash), cost))
        });
    }
    group.finish();
}

fn tokens(c: &mut Criterion) {
    let keys = TokenKeys::new(&[7; 32], jsonwebtoken::Algorithm::HS256, 60);
    let session = "AAAAAAAAAAAAAAAAAAAAAA";
    let token = keys.issue(42, session).expect("token");
    c.bench_function("jwt HS256 issue", |b| b.iter(|| keys.issue(42, session)));
    c.bench_function("jwt HS256 verify", |b| b.iter(|| keys.verify(&token)));
}

fn sql(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database = DatabaseConfig::Sqlite {
        path: dir.path().join("bench.sqlite3"),
    };
    let pool = PoolOptions {
        max_connections: 4,
        connect_timeout: Duration::from_secs(5),
    };
    let db = Db::open(&database, pool).expect("database");
    let hash = hash_password("benchmark-password", 4).expect("hash");
    for i in 0..1000 {
        db.insert_user(&user(&format!("user{i}@example.com"), &hash))
            .expect("seed a user");
    }
    c.bench_function("sqlite find_user_by_id (1,000 users)", |b| {
        b.iter(|| db.find_user_by_id(500))
    });
    c.bench_function("sqlite find_user_by_email (1,000 users)", |b| {
        b.iter(|| db.find_user_by_email("USER500@example.com"))
    });
    let mut next = 0u64;
    c.bench_function("sqlite insert_user (synchronous=FULL)", |b| {
        b.iter_batched(
            || {
                next += 1;
                format!("new{next}@example.com")
            },
            |email| db.insert_user(&user(&email, &hash)),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("sqlite ping", |b| b.iter(|| db.ping()));
}

fn user<'a>(email: &'a str, password_hash: &'a str) -> NewUserRow<'a> {
    NewUserRow {
        name: "Bench User",
        phone: "+1 555 0100",
        image_url: None,
        email,
        password_hash,
    }
}

criterion_group!(benches, bcrypt, tokens, sql);
criterion_main!(benches);
