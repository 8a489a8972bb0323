//! `backnd-api user create|list|show|set-password|delete`: the account operations of the API
//! for an operator at the server's console, with the API's validation (`src/fields.rs`) and the
//! same store calls, so a user made here is one the API could have made.
//!
//! Passwords are read from the terminal without echo (asked twice), or from one line of
//! stdin when stdin is not a terminal; never from the command line, which every user on the
//! machine can read. Nothing printed ever holds a password hash.

use std::io::{BufRead, IsTerminal};

use serde_json::{json, Value};

use super::{open, Failure};
use crate::config::Config;
use crate::db::{unix_millis, Db, DbError, NewUserRow, UserRow};
use crate::fields;

/// The `user` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user, validated as POST /auth/register validates it; the password is asked
    /// for (twice, without echo), or read from one line of stdin when it is not a terminal
    Create {
        /// Email address (trimmed and stored lower-case; one account per address)
        #[arg(long)]
        email: String,
        /// Display name, 1 to 100 characters
        #[arg(long)]
        name: String,
        /// Phone number: 5 to 20 digits, with an optional leading + and spaces, dashes, dots
        /// or parentheses
        #[arg(long)]
        phone: String,
        /// Avatar: an absolute http(s) URL
        #[arg(long)]
        image_url: Option<String>,
    },
    /// List every user as a table, or as JSON with --json
    List {
        /// Print a JSON array of users (the API's user objects) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show one user, by id or email
    Show {
        /// The user's id, or their email in any case or look-alike form
        user: String,
        /// Print the API's JSON user object instead of lines
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password (asked for as in create) and end every session of theirs, as
    /// POST /auth/password does
    SetPassword {
        /// The user's id, or their email
        user: String,
    },
    /// Delete a user with their sessions, as DELETE /auth/me does
    Delete {
        /// The user's id, or their email
        user: String,
    },
}

/// Runs a `user` subcommand.
pub(crate) fn run(command: UserCommand, config: &Config) -> Result<(), Failure> {
    match command {
        UserCommand::Create {
            email,
            name,
            phone,
            image_url,
        } => create(config, &email, &name, &phone, image_url.as_deref()),
        UserCommand::List { json } => list(config, json),
        UserCommand::Show { user, json } => {
            let db = open(&config.database, config, false)?;
            let user = find(&db, &user)?;
            if json {
                println!("{}", user_json(&user));
            } else {
                println!("id          {}", user.id);
                println!("email       {}", user.email);
                println!("name        {}", user.name);
                println!("phone       {}", user.phone);
                println!("image_url   {}", user.image_url.as_deref().unwrap_or("-"));
                println!("created_at  {}", user.created_at);
                println!("updated_at  {}", user.updated_at);
            }
            Ok(())
        }
        UserCommand::SetPassword { user } => {
            let db = open(&config.database, config, false)?;
            let user = find(&db, &user)?;
            let hash = new_password_hash(config)?;
            if !db.change_password(user.id, &hash, None, unix_millis())? {
                return Err(Failure::Failed(format!(
                    "user {} was deleted meanwhile",
                    user.id
                )));
            }
            println!(
                "password of user {} changed; every session of theirs ended",
                user.id
            );
            Ok(())
        }
        UserCommand::Delete { user } => {
            let db = open(&config.database, config, false)?;
            let user = find(&db, &user)?;
            if !db.delete_user(user.id, &crate::routes::account_key(&user.email))? {
                return Err(Failure::Failed(format!(
                    "user {} was deleted meanwhile",
                    user.id
                )));
            }
            println!("deleted user {} ({})", user.id, user.email);
            Ok(())
        }
    }
}

fn create(
    config: &Config,
    email: &str,
    name: &str,
    phone: &str,
    image_url: Option<&str>,
) -> Result<(), Failure> {
    // Every field is checked before anything is asked for, and all problems are told at once,
    // as registration's 422 lists them.
    let email = checked("--email", fields::email(&Value::from(email)));
    let name = checked("--name", fields::name(&Value::from(name)));
    let phone = checked("--phone", fields::phone(&Value::from(phone)));
    let image_url =
        image_url.map(|url| checked("--image-url", fields::image_url(&Value::from(url))));
    let (email, name, phone, image_url) = match (email, name, phone, image_url.transpose()) {
        (Ok(email), Ok(name), Ok(phone), Ok(image_url)) => (email, name, phone, image_url),
        (email, name, phone, image_url) => {
            let problems: Vec<String> = [email.err(), name.err(), phone.err(), image_url.err()]
                .into_iter()
                .flatten()
                .collect();
            return Err(Failure::Usage(problems.join("\n")));
        }
    };
    let db = open(&config.database, config, true)?;
    // Told before the password is asked for; the insert checks again, atomically.
    if db.find_user_by_email(&email)?.is_some() {
        return Err(Failure::Failed("email already registered".to_owned()));
    }
    let hash = new_password_hash(config)?;
    let user = db
        .insert_user(&NewUserRow {
            name: &name,
            phone: &phone,
            image_url: image_url.as_deref(),
            email: &email,
            password_hash: &hash,
        })
        .map_err(|err| match err {
            DbError::EmailTaken => Failure::Failed("email already registered".to_owned()),
            other => Failure::from(other),
        })?;
    println!("created user {} ({})", user.id, user.email);
    Ok(())
}

fn list(config: &Config, json: bool) -> Result<(), Failure> {
    let db = open(&config.database, config, false)?;
    let users = db.list_users()?;
    if json {
        let all: Vec<Value> = users.iter().map(user_json).collect();
        println!("{}", Value::Array(all));
        return Ok(());
    }
    let rows: Vec<[String; 5]> = users
        .iter()
        .map(|user| {
            [
                user.id.to_string(),
                user.email.clone(),
                user.name.clone(),
                user.phone.clone(),
                user.created_at.clone(),
            ]
        })
        .collect();
    let header = ["ID", "EMAIL", "NAME", "PHONE", "CREATED_AT"].map(str::to_owned);
    let mut widths = header.clone().map(|title| title.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| {
                let pad = width.saturating_sub(cell.chars().count());
                format!("{cell}{}", " ".repeat(pad))
            })
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    println!(
        "({} user{})",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

/// The API's user object (`UserResponse`): every column but the password hash.
fn user_json(user: &UserRow) -> Value {
    json!({
        "id": user.id,
        "name": user.name,
        "phone": user.phone,
        "image_url": user.image_url,
        "email": user.email,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    })
}

/// A field's rule applied, its refusal turned into a line naming the flag.
fn checked(flag: &str, rule: crate::body::Rule<String>) -> Result<String, String> {
    rule.map_err(|problem| format!("invalid {flag}: {}", problem.message()))
}

/// Finds a user by id (all digits) or else by email, under the email's identity as a login
/// finds it.
fn find(db: &Db, user: &str) -> Result<UserRow, Failure> {
    let found = match user.trim().parse::<i64>() {
        Ok(id) => db.find_user_by_id(id)?,
        Err(_) => db.find_user_by_email(&fields::normalise_email(user))?,
    };
    found.ok_or_else(|| Failure::Failed(format!("no user {}", crate::config::quote(user))))
}

/// Reads a new password, checks it with registration's rule and hashes it at `BCRYPT_COST`.
fn new_password_hash(config: &Config) -> Result<String, Failure> {
    let password = read_password()?;
    let password = fields::new_password(&Value::from(password))
        .map_err(|problem| Failure::Usage(format!("invalid password: {}", problem.message())))?;
    crate::security::hash_password(&password, config.bcrypt_cost)
        .map_err(|err| Failure::Failed(format!("cannot hash the password: {err}")))
}

/// Reads the password: on a terminal, asked twice without echo; otherwise the first line of
/// stdin, without its line ending (nothing else is trimmed: spaces are part of a password).
fn read_password() -> Result<String, Failure> {
    let io = |err: std::io::Error| Failure::Failed(format!("cannot read the password: {err}"));
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(io)?;
        let again = rpassword::prompt_password("Password again: ").map_err(io)?;
        if first != again {
            return Err(Failure::Usage("the two passwords differ".to_owned()));
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(io)?;
    if line.is_empty() {
        return Err(Failure::Usage(
            "no password on stdin (give it as one line, or run on a terminal to be asked)"
                .to_owned(),
        ));
    }
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}
