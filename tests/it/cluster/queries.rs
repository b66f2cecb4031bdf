//! State queries in a cluster: any server answers, reading a partition another server
//! runs from that server (and saying which one answered), scans included.

use super::*;
use eddy_host::log::partitioner::partition_for_key;

/// `eddy state get` on `server`, as JSON (`None` when it fails, with its message).
fn get(server: &ServerProcess, key: &str) -> Result<Value, String> {
    let (ok, out, err) = server.cli(&["state", "get", "wc", "wordcount", "counts", key, "--json"]);
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
    let (a, b) = running_on_two(dir.path(), &broker);

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
    let status = wait_status(&a, "both servers to run tasks", |v| {
        servers_of(v).len() == 2
    });
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

    // A key without a value in another server's partition: that server's 404, passed on.
    let missing = (0..100)
        .map(|i| format!("none{i}"))
        .find(|k| owner(partition_for_key(k.as_bytes(), 4) as u64) == "b")
        .unwrap();
    let refused = get(&a, &missing).unwrap_err();
    assert!(refused.contains("no committed value"), "{refused}");

    // A scan over every partition, 5 entries a page, from either server: every word
    // once with its count, each entry naming the server that read it.
    for server in [&a, &b] {
        let out = server.ok(&[
            "state",
            "scan",
            "wc",
            "wordcount",
            "counts",
            "--limit",
            "5",
            "--all",
            "--json",
        ]);
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
}
