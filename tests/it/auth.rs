//! With `--api-token`, every call but `/healthz` needs the token, compared exactly; a
//! read token, or `--public-read`, opens the reads only. Every operation of the OpenAPI
//! document is tried, so a new endpoint cannot slip through.

use crate::support::server::TestApp;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use eddy_host::api::ApiConfig;
use serde_json::Value;

const ADMIN: (&str, &str) = ("authorization", "Bearer s3cret");
const READER: (&str, &str) = ("authorization", "Bearer r3ad");

/// Every operation in the OpenAPI document, with its placeholders filled in.
async fn operations(t: &TestApp, savepoint: &str) -> Vec<(Method, String)> {
    let (s, doc) = t
        .json(Method::GET, "/v1/openapi.json", Body::empty(), &[ADMIN])
        .await;
    assert_eq!(s, StatusCode::OK, "{doc}");
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if path == "/healthz" || path == "/readyz" {
            continue;
        }
        let name = if path.starts_with("/v1/operators") {
            "wordcount"
        } else {
            "wc"
        };
        let uri = path
            .replace("{name}", name)
            .replace("{topic}", "lines")
            .replace("{id}", savepoint)
            .replace("{version}", "1");
        for method in item.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            out.push((method, uri.clone()));
        }
    }
    out.push((Method::GET, "/metrics".into()));
    out.push((Method::GET, "/v1/topics/lines/records?follow=true".into()));
    out
}

fn reading(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD)
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_token_every_call_but_healthz_needs_it() {
    let t = TestApp::with_api(ApiConfig {
        token: Some("s3cret".into()),
        read_token: Some("r3ad".into()),
        ..ApiConfig::default()
    });
    let ops = operations(&t, "wc-1-0000").await;
    assert!(ops.len() > 20, "{ops:?}");
    let (s, _) = t.get("/healthz").await;
    assert_eq!(s, StatusCode::OK, "/healthz needs no token");
    for (method, uri) in &ops {
        let (s, e) = t.call(method.clone(), uri, Body::empty(), &[]).await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{method} {uri} without a token: {}",
            String::from_utf8_lossy(&e)
        );
        let e: Value = serde_json::from_slice(&e).unwrap();
        assert!(e["detail"].as_str().unwrap().contains("Bearer"), "{e}");
        for wrong in [
            "Bearer s3cret ",
            "Bearer  s3cret",
            "Bearer s3cre",
            "Bearer s3cret2",
            "s3cret",
            "Basic s3cret",
            "Bearer r3ad ",
        ] {
            let (s, _) = t
                .call(
                    method.clone(),
                    uri,
                    Body::empty(),
                    &[("authorization", wrong)],
                )
                .await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {uri} with {wrong:?}");
        }
        if reading(method) {
            // (A follow stream never ends: only its status is looked at.)
            if uri.contains("follow=true") {
                continue;
            }
            for token in [ADMIN, READER, ("authorization", "bearer s3cret")] {
                let (s, e) = t.call(method.clone(), uri, Body::empty(), &[token]).await;
                assert!(
                    s != StatusCode::UNAUTHORIZED && s != StatusCode::FORBIDDEN,
                    "{method} {uri} with {token:?}: {s} {}",
                    String::from_utf8_lossy(&e)
                );
            }
        } else {
            let (s, e) = t.call(method.clone(), uri, Body::empty(), &[READER]).await;
            assert_eq!(
                s,
                StatusCode::FORBIDDEN,
                "{method} {uri} with the read token: {}",
                String::from_utf8_lossy(&e)
            );
            let (s, _) = t.call(method.clone(), uri, Body::empty(), &[ADMIN]).await;
            assert!(
                s != StatusCode::UNAUTHORIZED && s != StatusCode::FORBIDDEN,
                "{method} {uri}: {s}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn public_read_opens_reads_and_nothing_else() {
    let t = TestApp::with_api(ApiConfig {
        token: Some("s3cret".into()),
        public_read: true,
        ..ApiConfig::default()
    });
    let ops = operations(&t, "none-1").await;
    for (method, uri) in &ops {
        if uri.contains("follow=true") {
            continue;
        }
        let (s, _) = t.call(method.clone(), uri, Body::empty(), &[]).await;
        if reading(method) {
            assert!(s != StatusCode::UNAUTHORIZED, "{method} {uri}: {s}");
        } else {
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {uri}");
        }
    }
}
