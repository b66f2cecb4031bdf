//! State queries in a cluster: any server answers, reading a partition another server
//! runs from that server with the caller's token (and saying which one answered), scans
//! included; a server that does not answer is a 503 naming it.

use super::*;
use crate::support::eddy;
use eddy_host::log::partitioner::partition_for_key;

const TOKEN: &str = "cluster-secret";

/// A member of cluster `c1` that needs the token on every call.
fn guarded_member(dir: &Path, broker: &Broker, name: &str) -> ServerProcess {
    member_with(&dir.join(name), broker, name, &["--api-token", TOKEN])
}

/// The CLI against `server`, with the token: (success, stdout, stderr).
fn cli(server: &ServerProcess, args: &[&str]) -> (bool, String, String) {
    let out = eddy()
        .env("EDDY_SERVER", &server.url)
        .env("EDDY_API_TOKEN", TOKEN)
        .args(args)
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

fn ok(server: &ServerProcess, args: &[&str]) -> String {
    let (ok, out, err) = cli(server, args);
    assert!(ok, "eddy {args:?}: {err}");
    out
}

/// `eddy state get` on `server`, as JSON (its message when it fails).
fn get(server: &ServerProcess, key: &str) -> Result<Value, String> {
    let (ok, out, err) = cli(
        server,
        &["state", "get", "wc", "wordcount", "counts", key, "--json"],
    );
    if ok {
        Ok(serde_json::from_str(&out).unwrap())
    } else {
        Err(err)
    }
}

#[test]
fn any_server_answers_a_state_query_from_the_server_that_runs_the_partition() {
    let broker = Broker::start();
    broker.create_topic("lines", 4);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        guarded_member(dir.path(), &broker, "a"),
        guarded_member(dir.path(), &broker, "b"),
    );
    ok(
        &a,
        &[
            "operator",
            "push",
            "wordcount",
            guest("wordcount").to_str().unwrap(),
        ],
    );
    let spec = dir.path().join("wc.toml");
    std::fs::write(&spec, super::spec()).unwrap();
    ok(&a, &["pipeline", "create", spec.to_str().unwrap()]);

    // Word `wN` N times, each record keyed by its word in the word's own partition, so a
    // count lives where a key lookup looks for it.
    let words: Vec<String> = (1..=12).map(|n| format!("w{n}")).collect();
    for (n, word) in words.iter().enumerate() {
        let p = partition_for_key(word.as_bytes(), 4) as i32;
        let records: Vec<(&str, &str, i64)> = (0..=n)
            .map(|_| (word.as_str(), word.as_str(), 1_700_000_000_000))
            .collect();
        broker.produce_to("lines", p, &records);
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        let v: Value =
            serde_json::from_str(&ok(&a, &["pipeline", "status", "wc", "--json"])).unwrap();
        if servers_of(&v).len() == 2 {
            break v;
        }
        assert!(Instant::now() < deadline, "both servers to run tasks: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let owner = |p: u64| -> String {
        let tasks = status["tasks"].as_array().unwrap();
        let t = tasks.iter().find(|t| t["partition"] == p).unwrap();
        t["server"].as_str().unwrap().to_string()
    };

    // Every word's count through A and through B, each read where its partition runs.
    let mut answered = BTreeSet::new();
    for (n, word) in words.iter().enumerate() {
        let p = partition_for_key(word.as_bytes(), 4) as u64;
        for server in [&a, &b] {
            let deadline = Instant::now() + Duration::from_secs(60);
            let read = loop {
                match get(server, word) {
                    Ok(v) if v["entries"][0]["number"] == (n + 1) as u64 => break v,
                    other => assert!(Instant::now() < deadline, "{word}: {other:?}"),
                }
                std::thread::sleep(Duration::from_millis(200));
            };
            assert_eq!(read["entries"][0]["partition"], p, "{read}");
            assert_eq!(
                read["server"],
                owner(p),
                "{word} is read where partition {p} runs: {read}"
            );
            answered.insert(read["server"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(
        answered.len(),
        2,
        "both servers answered some words: {answered:?}"
    );

    // A key without a value in a partition B runs: B's 404 (the token went along: no 401).
    let missing = (0..100)
        .map(|i| format!("none{i}"))
        .find(|k| owner(partition_for_key(k.as_bytes(), 4) as u64) == "b")
        .unwrap();
    let refused = get(&a, &missing).unwrap_err();
    assert!(refused.contains("no committed value"), "{refused}");

    // A scan over every partition, 5 entries a page, from either server: every word
    // once with its count, each entry naming the server that read it.
    for server in [&a, &b] {
        let out = ok(
            server,
            &[
                "state",
                "scan",
                "wc",
                "wordcount",
                "counts",
                "--limit",
                "5",
                "--all",
                "--json",
            ],
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        let entries = v["entries"].as_array().unwrap();
        let mut got: Vec<(String, u64)> = entries
            .iter()
            .map(|e| {
                let p = e["partition"].as_u64().unwrap();
                assert_eq!(e["server"], owner(p), "{e}");
                (
                    e["key"].as_str().unwrap().to_string(),
                    e["number"].as_u64().unwrap(),
                )
            })
            .collect();
        let partitions: Vec<u64> = entries
            .iter()
            .map(|e| e["partition"].as_u64().unwrap())
            .collect();
        assert!(partitions.is_sorted(), "partition order: {partitions:?}");
        got.sort();
        let mut expected: Vec<(String, u64)> = words
            .iter()
            .enumerate()
            .map(|(n, w)| (w.clone(), n as u64 + 1))
            .collect();
        expected.sort();
        assert_eq!(got, expected);
    }

    // B killed: until A takes its partitions, a read of one of them is a 503 naming B.
    let in_b = words
        .iter()
        .find(|w| owner(partition_for_key(w.as_bytes(), 4) as u64) == "b")
        .unwrap()
        .clone();
    b.kill();
    let refused = get(&a, &in_b).unwrap_err();
    assert!(
        refused.contains("partition unavailable") && refused.contains("server b"),
        "{refused}"
    );
}
