//! Helpers for server tests: an in-process app behind the real router, and the real
//! `eddy serve` binary.

use super::{eddy, guest};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use eddy_host::api::{self, ApiConfig};
use eddy_host::server::{App, ServerConfig};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tower::ServiceExt;

/// An app on a temporary data dir, called through `router().oneshot`.
pub struct TestApp {
    pub app: Option<App>,
    pub router: axum::Router,
    config: ServerConfig,
    dir: Option<tempfile::TempDir>,
}

impl TestApp {
    pub fn new() -> Self {
        Self::with_api(ApiConfig::default())
    }

    pub fn with_api(api: ApiConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::open(dir, api)
    }

    pub fn open(dir: tempfile::TempDir, api: ApiConfig) -> Self {
        Self::open_with(dir, api, None)
    }

    /// A server whose pipelines may use Kafka topics on `brokers`.
    pub fn with_kafka(brokers: &str) -> Self {
        Self::open_with(
            tempfile::tempdir().unwrap(),
            ApiConfig::default(),
            Some(brokers.to_string()),
        )
    }

    pub fn open_with(
        dir: tempfile::TempDir,
        api: ApiConfig,
        kafka_brokers: Option<String>,
    ) -> Self {
        Self::open_config(dir, api, kafka_brokers, ServerConfig::default())
    }

    /// A server with `config`'s settings (its data dir, API and brokers come from the
    /// other arguments).
    pub fn open_config(
        dir: tempfile::TempDir,
        api: ApiConfig,
        kafka_brokers: Option<String>,
        config: ServerConfig,
    ) -> Self {
        let config = ServerConfig {
            data_dir: dir.path().to_path_buf(),
            workers: 2,
            api: api.clone(),
            kafka_brokers,
            cluster: None,
            server_name: None,
            ..config
        };
        let app = App::open(&config).unwrap();
        let router = api::router(app.state(api));
        TestApp {
            app: Some(app),
            router,
            config,
            dir: Some(dir),
        }
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.as_ref().expect("open").path()
    }

    /// Shuts the server down (committing every task) and hands over its data directory.
    pub fn close(mut self) -> tempfile::TempDir {
        self.router = axum::Router::new();
        if let Some(app) = self.app.take() {
            app.shutdown();
        }
        self.dir.take().expect("open")
    }

    /// Shuts the server down (committing every task) and opens it again on the same data.
    pub fn restart(mut self) -> Self {
        // The router holds the server's state: it goes first, so the database closes.
        self.router = axum::Router::new();
        if let Some(app) = self.app.take() {
            app.shutdown();
        }
        let dir = self.dir.take().expect("open");
        let config = self.config.clone();
        Self::open_config(
            dir,
            config.api.clone(),
            config.kafka_brokers.clone(),
            config,
        )
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        body: impl Into<Body>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, bytes.to_vec())
    }

    /// A call whose answer is JSON.
    pub async fn json(
        &self,
        method: Method,
        uri: &str,
        body: impl Into<Body>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, serde_json::Value) {
        let (status, bytes) = self.call(method, uri, body, headers).await;
        let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{uri}: not JSON ({status}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, v)
    }

    /// `GET uri`, answered in JSON.
    pub async fn get(&self, uri: &str) -> (StatusCode, serde_json::Value) {
        self.json(Method::GET, uri, Body::empty(), &[]).await
    }

    /// `POST uri` with a JSON body.
    pub async fn post_json(
        &self,
        uri: &str,
        body: impl Into<Body>,
    ) -> (StatusCode, serde_json::Value) {
        self.json(
            Method::POST,
            uri,
            body,
            &[("content-type", "application/json")],
        )
        .await
    }

    /// Upgrades `operator` of `pipeline` to `version` and waits for the outcome (a
    /// probation needs records: the test sends them meanwhile).
    pub async fn upgrade(
        &self,
        pipeline: &str,
        operator: &str,
        version: u32,
    ) -> (StatusCode, serde_json::Value) {
        let body = serde_json::json!({ "operator": operator, "version": version }).to_string();
        let uri = format!("/v1/pipelines/{pipeline}/upgrade?wait=true");
        let call = self.post_json(&uri, body);
        tokio::time::timeout(Duration::from_secs(120), call)
            .await
            .expect("the upgrade is still on probation after 2 minutes: did its records come?")
    }

    /// Starts an upgrade of `operator` to `version` with `config` (when given); answers
    /// once the new version runs on probation (or the swap failed and was undone).
    pub async fn start_upgrade(
        &self,
        pipeline: &str,
        operator: &str,
        version: u32,
        config: Option<serde_json::Value>,
    ) -> (StatusCode, serde_json::Value) {
        let mut body = serde_json::json!({ "operator": operator, "version": version });
        if let Some(c) = config {
            body["config"] = c;
        }
        self.post_json(
            &format!("/v1/pipelines/{pipeline}/upgrade"),
            body.to_string(),
        )
        .await
    }

    /// Waits for the last upgrade of `pipeline` to end; returns it as recorded.
    pub async fn upgrade_outcome(&self, pipeline: &str) -> serde_json::Value {
        let last = |v: &serde_json::Value| v["upgrades"].as_array().and_then(|a| a.last()).cloned();
        let v = self
            .wait_for(pipeline, "the upgrade's end", |v| {
                last(v).is_some_and(|u| u["result"] != "probation")
            })
            .await;
        last(&v).expect("an upgrade")
    }

    pub async fn push(&self, name: &str, guest_name: &str) -> serde_json::Value {
        self.push_file(name, &guest(guest_name)).await
    }

    /// Uploads the component at `path` as operator `name`.
    pub async fn push_file(&self, name: &str, path: &std::path::Path) -> serde_json::Value {
        let bytes = std::fs::read(path).unwrap();
        let (status, v) = self
            .json(
                Method::PUT,
                &format!("/v1/operators/{name}"),
                bytes,
                &[("content-type", "application/wasm")],
            )
            .await;
        assert!(status.is_success(), "{v}");
        v
    }

    pub async fn create_topic(&self, name: &str, partitions: u32) {
        let body = serde_json::json!({ "name": name, "partitions": partitions }).to_string();
        let (status, v) = self
            .json(
                Method::POST,
                "/v1/topics",
                body,
                &[("content-type", "application/json")],
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }

    pub async fn produce(&self, topic: &str, lines: &str) -> serde_json::Value {
        let (status, v) = self
            .json(
                Method::POST,
                &format!("/v1/topics/{topic}/records"),
                lines.to_string(),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    pub async fn create_pipeline(&self, toml: &str) -> (StatusCode, serde_json::Value) {
        self.json(
            Method::POST,
            "/v1/pipelines",
            toml.to_string(),
            &[("content-type", "application/toml")],
        )
        .await
    }

    /// Every record of a topic, all partitions: `(partition, offset, record json)`.
    pub async fn records(&self, topic: &str) -> Vec<serde_json::Value> {
        let (status, v) = self
            .json(
                Method::GET,
                &format!("/v1/topics/{topic}/records?limit=10000"),
                Body::empty(),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["records"].as_array().unwrap().clone()
    }

    /// Waits until `cond` holds for the pipeline's status.
    pub async fn wait_for(
        &self,
        pipeline: &str,
        what: &str,
        cond: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, v) = self
                .json(
                    Method::GET,
                    &format!("/v1/pipelines/{pipeline}"),
                    Body::empty(),
                    &[],
                )
                .await;
            if cond(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the pipeline has committed everything in its source.
    pub async fn wait_caught_up(&self, pipeline: &str) -> serde_json::Value {
        self.wait_for(pipeline, "lag 0", |v| {
            v["tasks"].as_array().is_some_and(|ts| {
                ts.iter()
                    .all(|t| t["lag"] == 0 && t["committed_offset"] == t["end_offset"])
            })
        })
        .await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown();
        }
    }
}

/// The body of `GET path` on a server (plain HTTP/1.0, no client library needed).
pub fn http_get(base: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// A real `eddy serve` process.
pub struct ServerProcess {
    pub child: Child,
    pub url: String,
}

impl ServerProcess {
    /// Starts `eddy serve` on a free port and waits until it listens.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_stderr(data_dir, extra, Stdio::inherit())
    }

    /// Like [`ServerProcess::start`], with the server's log going to `stderr`.
    pub fn start_with_stderr(data_dir: &Path, extra: &[&str], stderr: Stdio) -> Self {
        let mut child = eddy()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        // Keep draining stdout so the server never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        ServerProcess { child, url }
    }

    /// Runs the CLI against this server; returns (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = eddy()
            .env("EDDY_SERVER", &self.url)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Like [`ServerProcess::cli`], but the call must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.cli(args);
        assert!(ok, "eddy {args:?} failed: {stderr}");
        stdout
    }

    /// `kill -9`.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "eddy serve exited with {status}");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
