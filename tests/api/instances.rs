//! Several stateless instances on one database, as a deployment grows past one machine: what
//! one instance writes the other reads, and tokens from either are accepted by both.

use std::sync::Arc;

use serde_json::json;

use crate::helpers::{count_users, spawn_app, spawn_instance_sharing, valid_registration};

#[test]
fn a_user_registered_on_one_instance_logs_in_on_the_other_and_both_accept_both_tokens() {
    let first = spawn_app();
    let second = spawn_instance_sharing(&first, &[]);
    let registered = first.register_user("ada@example.com", "correct horse");

    let mut tokens = Vec::new();
    for instance in [&first, &second] {
        let login = instance.login("ada@example.com", "correct horse");
        assert_eq!(login.status, 200, "{}", login.text);
        assert_eq!(login.json["user"]["id"], registered["id"]);
        tokens.push(
            login.json["access_token"]
                .as_str()
                .expect("token")
                .to_owned(),
        );
    }
    for instance in [&first, &second] {
        for token in &tokens {
            let me = instance.me(token);
            assert_eq!(me.status, 200, "{}", me.text);
            assert_eq!(me.json, registered);
        }
    }
}

#[test]
fn a_registration_on_one_instance_is_a_conflict_on_the_other() {
    let first = spawn_app();
    let second = spawn_instance_sharing(&first, &[]);
    first.register_user("ada@example.com", "correct horse");
    let again = second.register(&valid_registration("ADA@example.com", "another password"));
    assert_eq!(again.status, 409, "{}", again.text);
    assert_eq!(again.json, json!({ "detail": "Email already registered" }));
}

#[test]
fn racing_registrations_of_one_email_across_two_instances_create_one_user() {
    let first = Arc::new(spawn_app());
    let second = Arc::new(spawn_instance_sharing(&first, &[]));
    let barrier = Arc::new(std::sync::Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let instance = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                instance
                    .register(&valid_registration("race@example.com", "correct horse"))
                    .status
            })
        })
        .collect();
    let mut statuses: Vec<u16> = handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect();
    statuses.sort_unstable();
    let mut expected = vec![409; 15];
    expected.insert(0, 201);
    assert_eq!(statuses, expected);
    assert_eq!(count_users(&first), 1);
}

#[test]
fn a_token_from_an_instance_with_another_secret_is_refused() {
    let first = spawn_app();
    let other = spawn_instance_sharing(
        &first,
        &[("JWT_SECRET", "a-different-secret-0123456789abcdef0123")],
    );
    let token = first.token_for_new_user("ada@example.com", "correct horse");
    assert_eq!(other.me(&token).status, 401);
}
