//! The web dashboard at `/`, in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `scripts/setup`) driven over WebDriver, against a real
//! `eddy serve` running a word count. A missing browser fails these tests. When a check
//! fails, a screenshot of the page goes to `<target>/tmp/dashboard/<test>/`.

use crate::support::guest;
use crate::support::server::{ServerProcess, TestApp};
use axum::http::StatusCode;
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(60);

const SPEC: &str = r#"
name = "wc"
[source]
topic = "lines"
[sink]
topic = "counts"
[[operators]]
name = "wordcount"
version = 1
[settings]
probation_records = 50
"#;

/// A headless Chromium session; its driver stops with it.
struct Browser {
    client: Client,
    driver: Child,
    shots: PathBuf,
    base: String,
}

impl Browser {
    async fn open(test: &str, base: &str) -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: install the Debian package {package} (scripts/setup does)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        // In a process group of its own: a failed test ends the browser with its driver.
        let driver = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-background-networking", "--window-size=1400,1000"],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no WebDriver session with {CHROMEDRIVER}: {e}"),
            }
        };
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("dashboard")
            .join(test);
        let _ = std::fs::remove_dir_all(&shots);
        Browser {
            client,
            driver,
            shots,
            base: base.to_string(),
        }
    }

    async fn goto(&self, fragment: &str) {
        let url = format!("{}/{fragment}", self.base);
        self.client.goto(&url).await.unwrap();
    }

    /// Runs `script` (a function body that returns a value) until `done` holds for its
    /// result; on timeout saves a screenshot and fails naming `what`.
    async fn wait(&self, what: &str, script: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let last = match self.client.execute(script, vec![]).await {
                Ok(v) if done(&v) => return v,
                Ok(v) => v,
                Err(e) => json!(format!("script failed: {e}")),
            };
            if Instant::now() > deadline {
                self.fail(what, &format!("last saw {last}")).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The text of the element `selector` finds, once there is one with text.
    async fn text(&self, what: &str, selector: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e ? e.textContent : null;",
            json!(selector)
        );
        let v = self
            .wait(what, &script, |v| v.as_str().is_some_and(|s| !s.is_empty()))
            .await;
        v.as_str().unwrap().to_string()
    }

    async fn click(&self, what: &str, selector: &str) {
        let script = format!(
            "const e = document.querySelector({}); if (!e || e.disabled) return false; e.click(); return true;",
            json!(selector)
        );
        self.wait(what, &script, |v| v == &json!(true)).await;
    }

    async fn fail(&self, what: &str, detail: &str) -> ! {
        std::fs::create_dir_all(&self.shots).unwrap();
        let shot = self
            .shots
            .join(format!("{}.png", what.replace([' ', '/'], "-")));
        match self.client.screenshot().await {
            Ok(png) => std::fs::write(&shot, png).unwrap(),
            Err(e) => eprintln!("no screenshot: {e}"),
        }
        panic!(
            "dashboard: {what}: {detail} (screenshot: {})",
            shot.display()
        );
    }

    /// Ends the session (Chromium quits), then the driver (on drop).
    async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver and the Chromium it started (killing the driver alone leaves it).
        // SAFETY: a plain signal to the process group the driver leads.
        unsafe { libc::kill(-(self.driver.id() as i32), libc::SIGKILL) };
        let _ = self.driver.wait();
    }
}

/// A server with the word count (version 1 running, version 2 pushed) and a producer
/// writing words until the returned flag is cleared.
async fn word_count_server(dir: &std::path::Path, extra: &[&str]) -> ServerProcess {
    let server = ServerProcess::start(dir, extra);
    let wc = guest("wordcount");
    let v2 = guest("wordcount-v2");
    server.ok(&["operator", "push", "wordcount", wc.to_str().unwrap()]);
    server.ok(&["topic", "create", "lines", "--partitions", "2"]);
    let spec = dir.join("wc.toml");
    std::fs::write(&spec, SPEC).unwrap();
    server.ok(&["pipeline", "create", spec.to_str().unwrap()]);
    server.ok(&["operator", "push", "wordcount", v2.to_str().unwrap()]);
    server
}

fn produce_words(url: &str, token: Option<&str>) -> tokio::task::JoinHandle<()> {
    let (url, token) = (
        format!("{url}/v1/topics/lines/records"),
        token.map(str::to_string),
    );
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        for i in 0.. {
            let body: String = (0..20)
                .map(|j| {
                    format!(
                        "{{\"key\":\"w{0}\",\"value\":\"w{0}\"}}\n",
                        (i * 20 + j) % 7
                    )
                })
                .collect();
            let mut req = http.post(&url).body(body);
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.expect("produce");
            assert!(resp.status().is_success(), "produce: {}", resp.status());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

async fn api(url: &str, path: &str) -> Value {
    let resp = reqwest::get(format!("{url}{path}")).await.unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_and_drives_a_running_word_count() {
    let dir = tempfile::tempdir().unwrap();
    let server = word_count_server(dir.path(), &[]).await;
    let url = server.url.clone();
    let producer = produce_words(&url, None);
    let b = Browser::open("word_count", &url).await;

    // The list: running, and the event count rises.
    b.goto("#/").await;
    let state = b
        .text("the pipeline's state", "tr[data-pipeline=wc] .state")
        .await;
    assert_eq!(state, "running");
    let count = |v: &Value| {
        v.as_str()
            .and_then(|s| s.replace(',', "").parse::<u64>().ok())
    };
    let read = "const e = document.querySelector('tr[data-pipeline=wc] .events-in'); return e ? e.textContent : null;";
    let first = b
        .wait("a first event count", read, |v| {
            count(v).is_some_and(|n| n > 0)
        })
        .await;
    let first = count(&first).unwrap();
    b.wait("a rising event count", read, |v| {
        count(v).is_some_and(|n| n > first)
    })
    .await;

    // The pipeline's page draws the topology: source → operator → sink.
    b.click("the pipeline's link", "tr[data-pipeline=wc] a")
        .await;
    let graph = b.text("the topology", "svg.topology").await;
    for name in ["lines", "wordcount @1", "counts"] {
        assert!(graph.contains(name), "the topology names {name}: {graph:?}");
    }
    b.text(
        "the operator's node",
        "svg.topology g.node.operator[data-name=wordcount]",
    )
    .await;

    // A savepoint taken from the page is one the API lists.
    b.click("the savepoint button", "#action-savepoint").await;
    let id = b
        .wait(
            "the savepoint's id",
            "const e = document.getElementById('savepoint-taken'); return e ? e.dataset.id : null;",
            |v| v.is_string(),
        )
        .await;
    let id = id.as_str().unwrap().to_string();
    let listed = api(&url, "/v1/pipelines/wc/savepoints").await;
    assert!(
        listed.as_array().unwrap().iter().any(|m| m["id"] == id),
        "the API lists {id}: {listed}"
    );
    let row = format!("#savepoints-table tr[data-savepoint=\"{id}\"]");
    b.text("the savepoint in the table", &row).await;

    // An upgrade from the page switches the version and shows the probation's verdict.
    b.wait(
        "version 2 offered",
        "const s = document.getElementById('upgrade-version'); return s ? s.value : null;",
        |v| v == "2",
    )
    .await;
    b.click("the upgrade button", "#upgrade-button").await;
    let verdict = b
        .wait(
            "the upgrade's verdict",
            "const e = document.getElementById('upgrade-verdict'); return e ? e.dataset.result : null;",
            |v| v.as_str().is_some_and(|r| r != "probation"),
        )
        .await;
    let status = api(&url, "/v1/pipelines/wc").await;
    let last = status["upgrades"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        verdict, last["result"],
        "the page shows the API's verdict: {last}"
    );
    assert_eq!(last["result"], "succeeded", "{last}");
    assert_eq!(status["operators"][0]["version"], 2, "{status}");
    b.text(
        "the upgrade in the table",
        "#upgrades-table .badge.succeeded",
    )
    .await;

    // The operators page lists both versions with their language.
    b.goto("#/operators").await;
    let language = b
        .text("an operator's language", "#operators-table td.language")
        .await;
    assert_eq!(language, "rust");

    // The topic page tails new records as they are written, hostile ones as text.
    b.goto("#/topics/lines").await;
    b.wait(
        "the tail to follow",
        "return document.getElementById('tail-state').textContent;",
        |v| v == "(following new records)",
    )
    .await;
    let hostile = r#"<img src=x onerror="window.pwned=1">"#;
    let record = json!({"key": hostile, "value": hostile}).to_string();
    let sent = reqwest::Client::new()
        .post(format!("{url}/v1/topics/lines/records"))
        .body(record)
        .send()
        .await
        .unwrap();
    assert!(sent.status().is_success(), "{}", sent.status());
    let found = format!(
        "return [...document.querySelectorAll('#tail tbody td')].some(td => td.textContent === {});",
        json!(hostile)
    );
    b.wait("the hostile record, as text", &found, |v| v == &json!(true))
        .await;
    let harmless = b
        .client
        .execute(
            "return [document.querySelector('#tail img') === null, window.pwned === undefined];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(harmless, json!([true, true]), "markup in a record ran");

    // With the input drained, the state browser shows a word's count as the API does.
    producer.abort();
    let _ = producer.await;
    wait_drained(&url).await;
    b.goto("#/pipelines/wc/state").await;
    b.wait(
        "the store list",
        "const s = document.getElementById('state-store'); return s ? s.value : null;",
        |v| v == "wordcount\ncounts",
    )
    .await;
    b.client
        .find(fantoccini::Locator::Id("state-key"))
        .await
        .unwrap()
        .send_keys("w3")
        .await
        .unwrap();
    b.click("the get button", "#state-get").await;
    let shown = b
        .text("the word's count", "#state-found .state-number")
        .await;
    let read = api(&url, "/v1/pipelines/wc/state/wordcount/counts?key=w3").await;
    let expected = read["entries"][0]["number"].as_i64().unwrap();
    assert!(expected > 0, "{read}");
    assert_eq!(shown.replace(',', ""), expected.to_string(), "{read}");

    // Stopped from the page and restored from the savepoint taken there (after a
    // confirmation): the tasks' offsets go back to the savepoint's.
    b.goto("#/pipelines/wc").await;
    b.click("the stop button", "#action-stop").await;
    b.wait("the stopped pipeline", STATE, |v| v == "stopped")
        .await;
    let restore = format!("{row} button.restore");
    b.wait(
        "an enabled restore button",
        &format!(
            "const e = document.querySelector({}); return !!e && !e.disabled;",
            json!(restore)
        ),
        |v| v == &json!(true),
    )
    .await;
    b.client
        .find(fantoccini::Locator::Css(&restore))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.client.accept_alert().await.unwrap();
    let restored = format!("Restored from {id}");
    b.wait(
        "the restore's message",
        "return document.getElementById('flash').textContent;",
        |v| v.as_str().is_some_and(|s| s.contains(&restored)),
    )
    .await;
    let manifest = api(&url, &format!("/v1/savepoints/{id}")).await;
    let status = api(&url, "/v1/pipelines/wc").await;
    for saved in manifest["tasks"].as_array().unwrap() {
        let task = status["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["partition"] == saved["partition"])
            .unwrap();
        assert_eq!(
            task["committed_offset"], saved["offset"],
            "{task} after restoring {saved}"
        );
    }

    b.close().await;
    server.stop();
}

/// Waits until every task committed its whole input and the counts stopped moving.
async fn wait_drained(url: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = api(url, "/v1/pipelines/wc").await;
        let tasks = s["tasks"].as_array().unwrap();
        if tasks.iter().all(|t| t["lag"] == 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the word count did not catch up: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_asks_for_the_token_and_shows_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let server = word_count_server_with_token(dir.path()).await;
    let b = Browser::open("token", &server.url).await;

    // Reads are public here; a change without the token is refused with the server's
    // message, and the page asks for the token.
    b.goto("#/pipelines/wc").await;
    b.text("the pipeline's state", "#pipeline-state .badge")
        .await;
    b.click("the stop button", "#action-stop").await;
    let refused = b.text("the refusal", "#flash").await;
    assert!(refused.contains("missing token"), "{refused:?}");
    b.wait(
        "the token prompt",
        "return !document.getElementById('token-bar').hidden;",
        |v| v == &json!(true),
    )
    .await;

    // A wrong token is refused by name; the right one lets the stop through.
    let input = b
        .client
        .find(fantoccini::Locator::Id("token-input"))
        .await
        .unwrap();
    input.send_keys("not-the-token").await.unwrap();
    b.click("use the token", "#token-form button").await;
    b.click("the stop button", "#action-stop").await;
    let refused = b.text("the wrong token's refusal", "#flash").await;
    assert!(refused.contains("wrong token"), "{refused:?}");
    let input = b
        .client
        .find(fantoccini::Locator::Id("token-input"))
        .await
        .unwrap();
    input.send_keys(TOKEN).await.unwrap();
    b.click("use the token", "#token-form button").await;
    b.click("the stop button", "#action-stop").await;
    b.wait("the stopped pipeline", STATE, |v| v == "stopped")
        .await;
    b.close().await;
    server.stop();
}

const TOKEN: &str = "dashboard-secret";

/// The pipeline page's state badge.
const STATE: &str =
    "const e = document.querySelector('#pipeline-state .badge'); return e ? e.textContent : null;";

async fn word_count_server_with_token(dir: &std::path::Path) -> ServerProcess {
    let server = ServerProcess::start(dir, &["--api-token", TOKEN, "--public-read"]);
    let run = |args: &[&str]| {
        let (ok, _, err) = crate::support::eddy()
            .env("EDDY_SERVER", &server.url)
            .env("EDDY_API_TOKEN", TOKEN)
            .args(args)
            .output()
            .map(|o| {
                (
                    o.status.success(),
                    o.stdout,
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                )
            })
            .unwrap();
        assert!(ok, "eddy {args:?}: {err}");
    };
    let wc = guest("wordcount");
    run(&["operator", "push", "wordcount", wc.to_str().unwrap()]);
    run(&["topic", "create", "lines", "--partitions", "2"]);
    let spec = dir.join("wc.toml");
    std::fs::write(&spec, SPEC).unwrap();
    run(&["pipeline", "create", spec.to_str().unwrap()]);
    server
}

/// Without a browser: the page and its assets answer without a token (they hold no
/// data) and forbid other origins' scripts; the API under them still needs the token.
#[tokio::test]
async fn the_page_needs_no_token_but_the_api_does() {
    let t = TestApp::with_api(eddy_host::api::ApiConfig {
        token: Some(TOKEN.into()),
        ..Default::default()
    });
    for (path, kind) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let req = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = tower::ServiceExt::oneshot(t.router.clone(), req)
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let headers = resp.headers();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(
            policy.contains("script-src 'self'") && policy.contains("connect-src 'self'"),
            "{policy}"
        );
    }
    let (s, _) = t.get("/v1/pipelines").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = t.get("/ui/other.js").await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "only the dashboard's own paths are open"
    );
}
