//! The HTTP client half of the CLI: every command is a call to a server's API.

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

/// Where the CLI finds the server.
#[derive(clap::Args, Clone)]
pub struct ServerArgs {
    /// The Eddy server.
    #[arg(
        long,
        global = true,
        env = "EDDY_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// Bearer token for servers started with --api-token.
    #[arg(long, global = true, env = "EDDY_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Print JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

/// A failed call, as one line for the user.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the Eddy server at {server}: {detail} (start one with `eddy serve`, or point --server / EDDY_SERVER at it)"
    )]
    Unreachable { server: String, detail: String },
    #[error("{error}: {detail}")]
    Api {
        status: StatusCode,
        error: String,
        detail: String,
    },
    #[error("unexpected answer from {server}: {detail}")]
    Protocol { server: String, detail: String },
}

pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(args: &ServerArgs) -> Self {
        Client {
            base: args.server.trim_end_matches('/').to_string(),
            token: args.api_token.clone().filter(|t| !t.is_empty()),
            http: reqwest::Client::new(),
        }
    }

    fn protocol(&self, detail: impl std::fmt::Display) -> ClientError {
        ClientError::Protocol {
            server: self.base.clone(),
            detail: detail.to_string(),
        }
    }

    /// Sends a request; a non-2xx answer becomes [`ClientError::Api`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &str)>,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, ClientError> {
        let body = body.map(|(bytes, content_type)| (reqwest::Body::from(bytes), content_type));
        self.send_body(method, path, body, accept).await
    }

    /// [`Client::send`] with any body (a stream, say).
    pub async fn send_body(
        &self,
        method: Method,
        path: &str,
        body: Option<(reqwest::Body, &str)>,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some((body, content_type)) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body);
        }
        if let Some(a) = accept {
            req = req.header(reqwest::header::ACCEPT, a);
        }
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            server: self.base.clone(),
            detail: root_cause(&e),
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) if v.get("error").is_some() => Err(ClientError::Api {
                status,
                error: v["error"].as_str().unwrap_or_default().to_string(),
                detail: v["detail"].as_str().unwrap_or_default().to_string(),
            }),
            _ => Err(ClientError::Api {
                status,
                error: status.to_string(),
                detail: text,
            }),
        }
    }

    /// Sends a request and decodes the JSON answer.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<T, ClientError> {
        let resp = self
            .send(method, path, body, Some("application/json"))
            .await?;
        resp.json().await.map_err(|e| self.protocol(e))
    }
}

fn root_cause(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(s) = source.source() {
        source = s;
    }
    source.to_string()
}

/// Percent-encodes one path segment.
pub fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
