//! Drift between the routes and the document.
//!
//! `routes!` registers each handler under the method and path of its `#[utoipa::path]`, so the
//! two come from one place. These tests close what that leaves open: every documented operation
//! is answered by a handler (not the 404/405 fallbacks), no path answers a method it does not
//! document, and the documented operations are exactly docs/api.md's v1 table (plus `/docs`) — so a
//! route added beside the table, or an operation dropped from it, fails here.

use crate::test_support::{admin_token, state};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;
use utoipa::openapi::path::HttpMethod;

/// The (method, path) rows of the endpoint table of docs/api.md: the operations the API has.
fn api_table() -> Vec<(String, String)> {
    let rows = include_str!("../../../../docs/api.md")
        .lines()
        .map(|l| l.split('|').map(str::trim));
    let cells = rows.filter_map(|mut c| Some((c.nth(1)?, c.next()?)));
    let ops = cells.filter(|(m, p)| {
        ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(m) && p.starts_with('/')
    });
    // A row may show its query (`/popular?days=3&limit=5`); the operation is the path.
    ops.map(|(m, p)| {
        (
            m.to_lowercase(),
            p.split('?').next().unwrap_or(p).to_owned(),
        )
    })
    .collect()
}

const METHODS: [(HttpMethod, &str); 5] = [
    (HttpMethod::Get, "get"),
    (HttpMethod::Post, "post"),
    (HttpMethod::Put, "put"),
    (HttpMethod::Patch, "patch"),
    (HttpMethod::Delete, "delete"),
];

/// Every (method, path) the document lists.
fn documented() -> Vec<(&'static str, String)> {
    let doc = super::document();
    let mut ops = Vec::new();
    for (path, item) in doc.paths.paths {
        for (method, name) in METHODS {
            let op = match method {
                HttpMethod::Get => &item.get,
                HttpMethod::Post => &item.post,
                HttpMethod::Put => &item.put,
                HttpMethod::Patch => &item.patch,
                HttpMethod::Delete => &item.delete,
                _ => &None,
            };
            if op.is_some() {
                ops.push((name, path.clone()));
            }
        }
    }
    ops
}

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| match seg {
            "{asset}" => "docs-init.js",
            s if s.starts_with('{') => "1",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The status and error code the service answers `method path` with.
async fn probe(method: &str, path: &str) -> (StatusCode, Option<String>) {
    let app = crate::router(state());
    let request = Request::builder()
        .method(Method::from_bytes(method.to_uppercase().as_bytes()).expect("method"))
        .uri(concrete(path))
        .header("authorization", format!("Bearer {}", admin_token()))
        .header("idempotency-key", "drift")
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .expect("request");
    let response = app.oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let code = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
    (status, code)
}

#[test]
fn the_document_lists_exactly_the_api_table() {
    let mut documented = documented();
    documented.sort();
    let mut table = api_table();
    table.sort();
    assert_eq!(table.len(), 38, "docs/api.md's table as read: {table:?}");
    let documented: Vec<(String, String)> = documented
        .into_iter()
        .map(|(m, p)| (m.to_owned(), p))
        .collect();
    assert_eq!(documented, table);
}

#[tokio::test]
async fn every_documented_operation_is_served_by_its_handler() {
    for (method, path) in documented() {
        let (status, code) = probe(method, &path).await;
        let fallback = (status == StatusCode::NOT_FOUND
            && code.as_deref() == Some("NOT_FOUND")
            && path != "/docs/{asset}")
            || status == StatusCode::METHOD_NOT_ALLOWED;
        assert!(
            !fallback,
            "{method} {path} is documented but not routed ({status})"
        );
    }
}

#[tokio::test]
async fn no_documented_path_answers_an_undocumented_method() {
    let documented = documented();
    let paths: std::collections::BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        for (_, method) in METHODS {
            if documented.iter().any(|(m, p)| *m == method && p == path) {
                continue;
            }
            let (status, _) = probe(method, path).await;
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is routed but not documented"
            );
        }
    }
}

#[test]
fn every_operation_documents_its_parameters_answers_and_access() {
    let doc = serde_json::to_value(super::document()).expect("json");
    for (method, path) in documented() {
        let op = &doc["paths"][&path][method];
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        for name in path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        {
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path"),
                "{method} {path} does not document its path parameter {name}"
            );
        }
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path} has no success answer"
        );
        for status in ["413", "414", "431", "500", "503"] {
            assert!(
                responses.contains_key(status),
                "{method} {path} lacks {status}"
            );
        }
        let public_list = method == "get" && path == "/api/v1/coupons";
        let signed_in = path.starts_with("/api/v1/")
            && !path.starts_with("/api/v1/products")
            && !path.starts_with("/api/v1/auth/")
            && !public_list;
        assert_eq!(
            op["security"].is_array(),
            signed_in,
            "{method} {path}: security does not match who may call it"
        );
        if signed_in {
            assert!(responses.contains_key("401"), "{method} {path} lacks 401");
        }
        if path.starts_with("/api/v1/admin/") {
            assert!(responses.contains_key("403"), "{method} {path} lacks 403");
        }
    }
}

#[test]
fn the_document_is_openapi_3_1_with_the_bearer_scheme() {
    let doc = serde_json::to_value(super::document()).expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[test]
fn every_list_documents_its_paging_and_its_next_link() {
    let doc = serde_json::to_value(super::document()).expect("json");
    let lists = [
        "/api/v1/products",
        "/api/v1/users/me/balance/transactions",
        "/api/v1/coupons",
        "/api/v1/users/me/coupons",
        "/api/v1/orders",
        "/api/v1/admin/orders",
        "/api/v1/admin/coupons",
        "/api/v1/admin/coupons/{id}/failures",
    ];
    for path in lists {
        let op = &doc["paths"][path]["get"];
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        for name in ["limit", "cursor"] {
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "query"),
                "GET {path} does not document `{name}`"
            );
        }
        assert!(
            op["responses"]["200"]["headers"]["Link"].is_object(),
            "GET {path} does not document its Link header"
        );
    }
}
