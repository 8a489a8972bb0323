//! `/openapi.json` and the Swagger UI at `/docs`, served from inside the binary.

use crate::helpers::spawn_app;

#[test]
fn the_openapi_document_describes_every_route_and_the_password_flow() {
    let app = spawn_app();
    let response = app.get("/openapi.json", &[]);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let doc = &response.json;
    assert!(doc["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.1")));
    assert_eq!(doc["info"]["title"], "backnd-api");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    for (path, method) in [
        ("/auth/register", "post"),
        ("/auth/login", "post"),
        ("/auth/me", "get"),
        ("/auth/me", "patch"),
        ("/auth/me", "delete"),
        ("/auth/password", "post"),
        ("/auth/refresh", "post"),
        ("/auth/logout", "post"),
        ("/auth/sessions", "get"),
        ("/auth/sessions/{id}", "delete"),
        ("/health", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is documented"
        );
    }
    let login_body = &doc["paths"]["/auth/login"]["post"]["requestBody"]["content"];
    assert!(login_body["application/json"].is_object());
    assert!(login_body["application/x-www-form-urlencoded"].is_object());
    let flow = &doc["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"];
    assert_eq!(flow["tokenUrl"], "/auth/login");
    assert_eq!(flow["refreshUrl"], "/auth/refresh");
    let register = &doc["paths"]["/auth/register"]["post"]["responses"];
    for status in ["201", "409", "413", "422", "503"] {
        assert!(register[status].is_object(), "register documents {status}");
    }
}

#[test]
fn the_session_and_account_routes_are_documented_with_their_answers_and_security() {
    let app = spawn_app();
    let doc = app.get("/openapi.json", &[]).json;
    let operation = |path: &str, method: &str| doc["paths"][path][method].clone();
    for (path, method, statuses, signed_in) in [
        ("/auth/refresh", "post", &["200", "401", "422"][..], false),
        ("/auth/logout", "post", &["204", "401", "422"][..], true),
        ("/auth/sessions", "get", &["200", "401"][..], true),
        (
            "/auth/sessions/{id}",
            "delete",
            &["204", "401", "404"][..],
            true,
        ),
    ] {
        let op = operation(path, method);
        for status in statuses {
            assert!(
                op["responses"][status].is_object(),
                "{method} {path}: {status}"
            );
        }
        assert_eq!(op["security"].is_array(), signed_in, "{method} {path}");
    }
    let refresh = &operation("/auth/refresh", "post")["requestBody"]["content"];
    assert!(refresh["application/json"].is_object());
    assert!(refresh["application/x-www-form-urlencoded"].is_object());
    let login = &operation("/auth/login", "post")["responses"]["200"]["content"]
        ["application/json"]["schema"]["$ref"];
    let name = login
        .as_str()
        .expect("a reference")
        .rsplit('/')
        .next()
        .unwrap();
    let required = &doc["components"]["schemas"][name]["required"];
    for field in ["refresh_token", "refresh_expires_in"] {
        assert!(
            required
                .as_array()
                .unwrap()
                .contains(&serde_json::json!(field)),
            "{field} in {required}"
        );
    }
    let scope = &operation("/auth/logout", "post")["parameters"][0];
    assert_eq!(scope["name"], "scope");
    assert_eq!(scope["in"], "query");
}

#[cfg(feature = "docs")]
#[test]
fn docs_redirects_to_the_swagger_ui_page_which_loads_the_document() {
    let app = spawn_app();
    let raw = app.raw_exchange(
        b"GET /docs HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        std::time::Duration::from_secs(5),
    );
    assert!(raw.starts_with("HTTP/1.1 308"), "{raw}");
    assert!(raw.contains("\r\nLocation: /docs/\r\n"), "{raw}");

    let page = app.get("/docs/", &[]);
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    assert!(page.text.contains("swagger-ui"), "{}", page.text);
    let init = app.get("/docs/swagger-initializer.js", &[]);
    assert_eq!(init.status, 200);
    assert!(
        init.text.contains("\"url\": \"/openapi.json\""),
        "{}",
        init.text
    );
    assert!(
        init.text.contains("\"validatorUrl\": \"none\""),
        "{}",
        init.text
    );
}

#[cfg(feature = "docs")]
#[test]
fn an_unknown_file_under_docs_is_404() {
    let app = spawn_app();
    let response = app.get("/docs/no-such-file.js", &[]);
    assert_eq!(response.status, 404);
    assert_eq!(response.json, serde_json::json!({ "detail": "Not Found" }));
}

/// The edge build (`--no-default-features`) has no Swagger UI, but still its document.
#[cfg(not(feature = "docs"))]
#[test]
fn without_the_docs_feature_there_is_no_swagger_ui_but_still_the_document() {
    let app = spawn_app();
    for path in ["/docs", "/docs/", "/docs/swagger-initializer.js"] {
        let response = app.get(path, &[]);
        assert_eq!(response.status, 404, "{path}");
        assert_eq!(response.json, serde_json::json!({ "detail": "Not Found" }));
    }
    let document = app.get("/openapi.json", &[]);
    assert_eq!(document.status, 200);
    assert!(document.json["paths"]["/auth/login"]["post"].is_object());
}
