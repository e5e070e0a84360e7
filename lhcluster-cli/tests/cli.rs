//! The `lhcluster` binary as an operator uses it: separate processes on
//! loopback TCP, checking outputs and exit codes. Every test has a time
//! limit and kills its processes on the way out.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{
    Cluster, LIMIT, Proc, TempDir, broker, broker_on, ep, free_port, limited, notify_broker, proxy,
    run, run_with, scrape, wait_workers, worker,
};

/// `lhcluster request --to <front> <args…>`.
fn request_args<'a>(front: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["request", "--to", front];
    all.extend_from_slice(args);
    all
}

/// A request run to its end: exit code, stdout, stderr.
fn request(front: &str, args: &[&str]) -> (i32, String, String) {
    run(&request_args(front, args))
}

/// A request left running in the background.
fn start_request(front: &str, args: &[&str]) -> Proc {
    Proc::start(&request_args(front, args))
}

/// A worker of `c` started with `args`, once the broker counts it (as
/// its first worker).
fn first_worker(c: &Cluster, args: &[&str]) -> Proc {
    let w = worker(&c.back, args);
    wait_workers(&c.front, 1);
    w
}

/// A broker serving `/metrics` on a free port, and that port's address.
fn metrics_broker() -> (Cluster, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let c = broker(&["--metrics", &addr]);
    (c, addr)
}

#[test]
fn echo_round_trip_with_receipts() {
    limited(|| {
        let c = broker(&[]);
        let _w = first_worker(&c, &["--type", "echo", "--echo"]);
        let (code, out, err) = request(
            &c.front,
            &[
                "--type",
                "echo",
                "--payload",
                "hello",
                "--receipt",
                "sent",
                "--receipt",
                "received",
            ],
        );
        assert_eq!(code, 0, "{out}\n{err}");
        assert_eq!(out, "receipt: sent\nreceipt: received\nstatus: ok\nhello");
        let (code, out, _) = request(
            &c.front,
            &["--type", "echo", "--id", "5", "--payload", "x", "--json"],
        );
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"], "ok");
        assert_eq!(v["payload"], "x");
        assert_eq!(v["request_id"], 5);
    });
}

#[test]
fn exec_worker_success_and_failure() {
    limited(|| {
        let c = broker(&[]);
        let _w = worker(
            &c.back,
            &[
                "--type",
                "upper",
                "--exec",
                "tr a-z A-Z; printf ' %s' \"$LHCLUSTER_REQUEST_ID\"",
            ],
        );
        let _f = worker(
            &c.back,
            &["--type", "fail", "--exec", "echo 'disk full' >&2; exit 3"],
        );
        wait_workers(&c.front, 2);
        let (code, out, _) = request(
            &c.front,
            &["--type", "upper", "--id", "9", "--payload", "shout"],
        );
        assert_eq!(code, 0);
        assert_eq!(out, "status: ok\nSHOUT 9");
        let (code, out, _) = request(&c.front, &["--type", "fail"]);
        assert_eq!(code, 3, "{out}");
        assert!(
            out.contains("status: failed") && out.contains("disk full"),
            "{out}"
        );
    });
}

#[test]
fn one_way_request_runs() {
    limited(|| {
        let c = broker(&[]);
        let dir = TempDir::new("oneway");
        let marker = dir.file("ran");
        let cmd = format!("cat > {marker}");
        let _w = first_worker(&c, &["--type", "log", "--exec", &cmd]);
        let (code, out, _) = request(
            &c.front,
            &["--type", "log", "--one-way", "--payload", "line"],
        );
        assert_eq!(code, 0, "{out}");
        let deadline = Instant::now() + LIMIT;
        while std::fs::read_to_string(&marker).unwrap_or_default() != "line" {
            assert!(Instant::now() < deadline, "the one-way request never ran");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

#[test]
fn duplicate_is_rejected_and_overload_and_no_workers_have_their_codes() {
    limited(|| {
        let c = broker(&["--max-pending-per-type", "1"]);
        let _w = first_worker(&c, &["--type", "slow", "--exec", "sleep 5; cat"]);
        let first = start_request(
            &c.front,
            &["--type", "slow", "--id", "1", "--receipt", "sent"],
        );
        first.expect_line("receipt: sent");
        let (code, out, _) = request(&c.front, &["--type", "slow", "--id", "1"]);
        assert_eq!(code, 5, "{out}");
        assert!(out.contains("status: rejected"));
        // One queued (the worker is busy), the next is over the bound.
        let _queued = start_request(
            &c.front,
            &["--type", "slow", "--id", "2", "--timeout", "10s"],
        );
        let deadline = Instant::now() + LIMIT;
        loop {
            let (_, out, _) = run(&["stats", "--broker", &c.front, "--json"]);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            if v["pending"] == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the second request was never queued"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let (code, out, _) = request(&c.front, &["--type", "slow", "--id", "3"]);
        assert_eq!(code, 6, "{out}");
        assert!(out.contains("status: overloaded"));
        let (code, _, _) = request(&c.front, &["--type", "nobody", "--fail-fast"]);
        assert_eq!(code, 9);
        let (code, _, _) = request(&c.front, &["--type", "nobody", "--timeout", "300ms"]);
        assert_eq!(code, 11);
    });
}

#[test]
fn worker_killed_mid_request_is_retried_on_another() {
    limited(|| {
        let c = broker(&[]);
        let doomed = first_worker(&c, &["--type", "job", "--exec", "sleep 20; cat"]);
        let request = start_request(
            &c.front,
            &[
                "--type",
                "job",
                "--payload",
                "rescued",
                "--retry-on-death",
                "--receipt",
                "sent",
            ],
        );
        request.expect_line("receipt: sent");
        let _rescuer = worker(&c.back, &["--type", "job", "--echo"]);
        wait_workers(&c.front, 2);
        doomed.signal("KILL");
        request.expect_line("status: ok");
        request.expect_line("rescued");
    });
}

#[test]
fn broker_killed_and_restarted_under_a_proxy() {
    limited(|| {
        let (front, back) = (ep(free_port()), ep(free_port()));
        let first = broker_on(&front, &back, &[]);
        let (_proxy, bind) = proxy(&front, &["--resend", "300ms"]);
        // No worker yet: the request waits in the broker (and the proxy).
        let request = start_request(
            &bind,
            &[
                "--type",
                "echo",
                "--payload",
                "survives",
                "--receipt",
                "received",
            ],
        );
        std::thread::sleep(Duration::from_millis(300));
        first.signal("KILL");
        drop(first);
        let _second = broker_on(&front, &back, &[]);
        let _w = worker(&back, &["--type", "echo", "--echo"]);
        request.expect_line("receipt: received");
        request.expect_line("status: ok");
        request.expect_line("survives");
    });
}

#[test]
fn a_worker_and_a_request_given_two_brokers_move_past_a_killed_one() {
    limited(|| {
        let (b1, b2) = (broker(&[]), broker(&[]));
        let _w = worker(
            &b1.back,
            &["--broker", &b2.back, "--type", "echo", "--echo"],
        );
        wait_workers(&b1.front, 1);
        b1.broker.signal("KILL");
        // Given up within the liveness bound (3 × 100 ms), then READY at b2.
        wait_workers(&b2.front, 1);
        // The request tries the dead one first, and moves on by itself.
        let (code, out, err) = run(&[
            "request",
            "--to",
            &b1.front,
            "--to",
            &b2.front,
            "--type",
            "echo",
            "--payload",
            "moved",
        ]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert_eq!(out, "status: ok\nmoved");
    });
}

#[test]
fn publish_and_subscribe() {
    limited(|| {
        let (_nb, front, back) = notify_broker(&[]);
        let sub = Proc::start(&[
            "subscribe",
            "--to",
            &front,
            "orders",
            "--count",
            "2",
            "--json",
        ]);
        // `subscribe` returns once the subscription is in force.
        let deadline = Instant::now() + LIMIT;
        while !sub.stderr_text().contains("subscribed") {
            assert!(Instant::now() < deadline, "subscribe never confirmed");
            std::thread::sleep(Duration::from_millis(10));
        }
        for payload in ["one", "two"] {
            let (code, _, err) = run(&["publish", "--to", &back, "orders", payload]);
            assert_eq!(code, 0, "{err}");
        }
        let (code, _, _) = run(&["publish", "--to", &back, "orders-archive", "not for us"]);
        assert_eq!(code, 0);
        let first: serde_json::Value = serde_json::from_str(&sub.expect_line("orders")).unwrap();
        assert_eq!(first["payload"], "one");
        let second: serde_json::Value = serde_json::from_str(&sub.expect_line("orders")).unwrap();
        assert_eq!(second["payload"], "two");
        let mut sub = sub;
        assert_eq!(sub.wait().code(), Some(0));
    });
}

#[test]
fn stats_json_and_metrics_scrape() {
    limited(|| {
        let (c, addr) = metrics_broker();
        let _w = first_worker(&c, &["--type", "7", "--echo"]);
        let (code, _, _) = request(&c.front, &["--type", "7"]);
        assert_eq!(code, 0);
        let (code, out, _) = run(&["stats", "--broker", &c.front, "--json"]);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["requests_completed"], 1);
        assert_eq!(v["types"]["7"]["completed"], 1);
        let body = scrape(&addr);
        assert!(
            body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
            "{body}"
        );
        assert!(
            body.contains("lhcluster_broker_requests_completed_total 1"),
            "{body}"
        );
        assert!(
            body.contains("lhcluster_broker_type_workers{request_type=\"7\"} 1"),
            "{body}"
        );
    });
}

/// Protocol 1.6: a worker started with `--type NAME` sends the name, and
/// the broker shows `name (id)` in `lhcluster stats`, `name` in its JSON,
/// a `type_name` label beside `request_type` in `/metrics`, and the name in
/// the text of a NO_WORKERS once the worker is gone.
#[test]
fn type_names_in_stats_metrics_and_errors() {
    limited(|| {
        let (c, addr) = metrics_broker();
        let id = lhcluster::request_type_id("orders.create");
        let mut w = first_worker(&c, &["--type", "orders.create", "--type", "7", "--echo"]);
        let (code, out, err) = request(&c.front, &["--type", "orders.create"]);
        assert_eq!(code, 0, "{out}\n{err}");

        let (code, out, _) = run(&["stats", "--broker", &c.front]);
        assert_eq!(code, 0);
        let line = out
            .lines()
            .find(|l| l.contains(&format!("orders.create ({id})")))
            .unwrap_or_else(|| panic!("no named type line:\n{out}"));
        // pending, in_flight, workers, received, completed
        let numbers: Vec<&str> = line.split_whitespace().skip(2).take(5).collect();
        assert_eq!(numbers, ["0", "0", "1", "1", "1"], "{line}");
        // The type given as a number has no name: shown by its id.
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().next() == Some("7")),
            "{out}"
        );

        let (code, out, _) = run(&["stats", "--broker", &c.front, "--json"]);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["types"][id.to_string()]["name"], "orders.create");
        assert!(v["types"]["7"].get("name").is_none(), "{out}");

        let body = scrape(&addr);
        let labels = format!("{{request_type=\"{id}\",type_name=\"orders.create\"}}");
        assert!(
            body.contains(&format!("lhcluster_broker_type_workers{labels} 1")),
            "{body}"
        );
        assert!(
            body.contains("lhcluster_broker_type_workers{request_type=\"7\"} 1"),
            "{body}"
        );

        // The worker gone, the broker still knows the name.
        w.signal("TERM");
        assert_eq!(w.wait().code(), Some(0));
        support::wait_stats(&c.front, "the worker to go", |s| s["workers"] == 0);
        let (code, out, _) = request(&c.front, &["--type", "orders.create", "--fail-fast"]);
        assert_ne!(code, 0);
        assert!(
            out.contains(&format!(
                "no worker serves request type orders.create ({id})"
            )),
            "{out}"
        );
    });
}

/// Latency histograms per type: `lhcluster stats` shows p50/p99 of the
/// queue wait, service and end-to-end times, `--json` the buckets, and
/// `/metrics` Prometheus histograms labelled as the other per-type series.
#[test]
fn latency_histograms_in_stats_and_metrics() {
    limited(|| {
        let (c, addr) = metrics_broker();
        let id = lhcluster::request_type_id("lat.echo");
        let _w = first_worker(&c, &["--type", "lat.echo", "--echo"]);
        for _ in 0..3 {
            let (code, out, err) = request(&c.front, &["--type", "lat.echo"]);
            assert_eq!(code, 0, "{out}\n{err}");
        }

        let (code, out, _) = run(&["stats", "--broker", &c.front]);
        assert_eq!(code, 0);
        let header = (out.lines())
            .find(|l| l.split_whitespace().next() == Some("type"))
            .unwrap_or_else(|| panic!("no header:\n{out}"));
        let columns: Vec<&str> = header.split_whitespace().collect();
        assert!(
            columns.ends_with(&["wait", "p50/p99", "service", "p50/p99", "e2e", "p50/p99"]),
            "{header}"
        );
        let row = out
            .lines()
            .find(|l| l.contains(&format!("lat.echo ({id})")))
            .unwrap_or_else(|| panic!("no row for the type:\n{out}"));
        // Three times, each `p50/p99` with a unit: a duration, never `-`.
        let times: Vec<&str> = row.split_whitespace().skip(7).collect();
        assert_eq!(times.len(), 3, "{row}");
        for t in times {
            let (p50, p99) = t.split_once('/').unwrap_or_else(|| panic!("{row}"));
            for p in [p50, p99] {
                assert!(
                    p.ends_with("us") || p.ends_with("ms") || p.ends_with('s'),
                    "{row}"
                );
            }
        }

        let (code, out, _) = run(&["stats", "--broker", &c.front, "--json"]);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let t = &v["types"][id.to_string()];
        for latency in ["queue_wait", "service", "end_to_end"] {
            assert_eq!(t[latency]["count"], 3, "{latency}: {t}");
            let counts: u64 = (t[latency]["counts"].as_array().unwrap().iter())
                .map(|c| c.as_u64().unwrap())
                .sum();
            assert_eq!(counts, 3, "{latency}: {t}");
        }

        let body = scrape(&addr);
        let labels = format!("request_type=\"{id}\",type_name=\"lat.echo\"");
        for latency in ["queue_wait", "service", "end_to_end"] {
            let metric = format!("lhcluster_broker_{latency}_seconds");
            for line in [
                format!("# TYPE {metric} histogram"),
                format!("{metric}_count{{{labels}}} 3"),
                format!("{metric}_bucket{{le=\"+Inf\",{labels}}} 3"),
                format!("{metric}_sum{{{labels}}} "),
            ] {
                assert!(body.contains(&line), "{line}\n{body}");
            }
        }
    });
}

/// `lhcluster watch` prints a request and its outcome as they pass a
/// broker started with `--watch`: type name and id, status, payload sizes
/// and, for the worker's result, its times; never the payload.
#[test]
fn watch_prints_a_request_and_its_outcome() {
    limited(|| {
        let watch_ep = ep(free_port());
        let c = broker(&["--watch", &watch_ep]);
        let t = lhcluster::request_type_id("orders.create");
        let _w = first_worker(&c, &["--type", "orders.create", "--echo"]);
        let watch = Proc::start(&["watch", "--endpoint", &watch_ep]);
        watch.expect_log("watching");
        // A subscription reaches a PUB socket some time after the connect,
        // and nothing says when: requests go until the tap shows one.
        let deadline = Instant::now() + LIMIT;
        let mut id = 0;
        loop {
            id += 1;
            let (code, out, err) = request(
                &c.front,
                &[
                    "--type",
                    "orders.create",
                    "--id",
                    &id.to_string(),
                    "--payload",
                    "hello",
                ],
            );
            assert_eq!(code, 0, "{out}\n{err}");
            if watch.lines.recv_timeout(Duration::from_millis(300)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "the tap showed nothing");
        }
        // Subscribed now: the next request and its outcome, in order.
        let id = (id + 1).to_string();
        let (code, _, _) = request(
            &c.front,
            &["--type", "orders.create", "--id", &id, "--payload", "hello"],
        );
        assert_eq!(code, 0);
        let label = format!("orders.create ({t}) id={id} ");
        let line = watch.expect_line(&label);
        assert_eq!(line, format!("request  {label}bytes=5"));
        let line = watch.expect_line(&label);
        let prefix = format!("outcome  {label}ok bytes=5 wait=");
        assert!(line.starts_with(&prefix), "{line}");
        assert!(
            line.contains(" service=") && line.contains(" e2e="),
            "{line}"
        );
        assert!(!line.contains("hello"), "no payload on the tap: {line}");

        // A broker status is an outcome too, without times; --json gives
        // the events as published.
        let json = Proc::start(&["watch", "--endpoint", &watch_ep, "--json", "--count", "1"]);
        json.expect_log("watching");
        let deadline = Instant::now() + LIMIT;
        let event = loop {
            let (code, _, _) = request(&c.front, &["--type", "nobody", "--fail-fast"]);
            assert_ne!(code, 0);
            if let Ok(line) = json.lines.recv_timeout(Duration::from_millis(300)) {
                break line;
            }
            assert!(Instant::now() < deadline, "the tap showed nothing");
        };
        let v: serde_json::Value = serde_json::from_str(&event).unwrap();
        assert_eq!(v["type"], lhcluster::request_type_id("nobody"));
        assert!(
            v["event"] == "request" || v["status"] == "no_workers",
            "{v}"
        );
    });
}

/// With CURVE, the tap takes the frontend's key and client list: a
/// listed client key watches; one with the broker's key but its own key
/// not listed is refused at the handshake (counted `auth_failures`) and
/// sees nothing.
#[test]
fn a_curve_broker_taps_only_to_listed_keys() {
    limited(|| {
        let (dir, name) = key_dir("watch", &["broker", "client"]);
        std::fs::copy(name("client.pub"), name("clients.keys")).unwrap();
        let watch_ep = ep(free_port());
        let c = broker(&[
            "--secret-key",
            &name("broker.key"),
            "--client-keys",
            &name("clients.keys"),
            "--watch",
            &watch_ep,
        ]);
        let keys = [
            "--server-key",
            &name("broker.pub"),
            "--secret-key",
            &name("client.key"),
        ];
        let stats = |front: &str| {
            let mut args = vec!["stats", "--broker", front, "--json"];
            args.extend(keys);
            let (code, out, err) = run(&args);
            assert_eq!(code, 0, "{err}");
            serde_json::from_str::<serde_json::Value>(&out).unwrap()
        };
        // The broker's key, but a fresh own key (not listed): refused
        // during the handshake, counted.
        let stranger = Proc::start(&[
            "watch",
            "--endpoint",
            &watch_ep,
            "--server-key",
            &name("broker.pub"),
        ]);
        stranger.expect_log("watching");
        let deadline = Instant::now() + LIMIT;
        while stats(&c.front)["auth_failures"] == 0 {
            assert!(
                Instant::now() < deadline,
                "the unlisted watcher was not refused"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The listed key: events (a STATS_QUERY is not one; requests are).
        let mut args = vec!["watch", "--endpoint", &watch_ep];
        args.extend(keys);
        let watcher = Proc::start(&args);
        watcher.expect_log("watching");
        let deadline = Instant::now() + LIMIT;
        loop {
            let mut args = vec!["--type", "sealed", "--fail-fast"];
            args.extend(keys);
            let (code, _, _) = request(&c.front, &args);
            assert_ne!(code, 0);
            if let Ok(line) = watcher.lines.recv_timeout(Duration::from_millis(300)) {
                assert!(line.contains("id="), "{line}");
                break;
            }
            assert!(Instant::now() < deadline, "the listed watcher saw nothing");
        }
        assert!(
            stranger.lines.try_recv().is_err(),
            "the stranger saw an event"
        );
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// The ready line names the tap's endpoint when there is one, and none
/// without `--watch` (off by default).
#[test]
fn the_ready_line_names_the_watch_tap_only_when_on() {
    limited(|| {
        let (front, back, watch) = (ep(free_port()), ep(free_port()), ep(free_port()));
        let on = Proc::start(&[
            "broker",
            "--frontend",
            &front,
            "--backend",
            &back,
            "--watch",
            &watch,
        ]);
        let line = on.expect_line("broker frontend=");
        assert!(line.ends_with(&format!(" watch={watch}")), "{line}");
        drop(on);
        let (front, back) = (ep(free_port()), ep(free_port()));
        let off = Proc::start(&["broker", "--frontend", &front, "--backend", &back]);
        let line = off.expect_line("broker frontend=");
        assert!(!line.contains("watch"), "{line}");
    });
}

#[test]
fn up_runs_the_example_cluster_file() {
    limited(|| {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/cluster.toml");
        let text = std::fs::read_to_string(file).unwrap();
        // Same file, on ports free now, so parallel runs do not collide.
        let mut text = text;
        for port in ["5555", "5556", "5550", "5560", "5561", "9100"] {
            text = text.replace(&format!(":{port}"), &format!(":{}", free_port()));
        }
        let dir = TempDir::new("up");
        let path = dir.file("cluster.toml");
        std::fs::write(&path, &text).unwrap();
        // The first `key = "value"` line of the file.
        let value = |key: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(&format!("{key} = ")))
                .and_then(|l| l.split('"').nth(1))
                .unwrap()
                .replace('*', "127.0.0.1")
        };
        let (front, proxy_bind) = (value("frontend"), value("bind"));
        let mut up = Proc::start(&["up", &path]);
        up.expect_line("cluster up");
        wait_workers(&front, 2);
        for to in [&front, &proxy_bind] {
            let (code, out, _) = request(to, &["--type", "echo", "--payload", "via up"]);
            assert_eq!(code, 0, "{out}");
            assert!(out.ends_with("via up"));
        }
        up.signal("TERM");
        assert_eq!(up.wait().code(), Some(0));
    });
}

#[test]
fn stats_log_lines_come_from_the_broker_and_the_worker() {
    limited(|| {
        // The broker under the flag's older name, the worker under its new.
        let c = broker(&["--stats-interval", "100ms"]);
        let w = worker(
            &c.back,
            &["--type", "echo", "--echo", "--stats-log-interval", "100ms"],
        );
        c.broker.expect_log("broker stats");
        w.expect_log("worker stats");
    });
}

#[test]
fn a_config_file_takes_the_library_keys_and_flags_win_over_it() {
    limited(|| {
        let (front, back) = (ep(free_port()), ep(free_port()));
        let path = std::env::temp_dir().join(format!("lhc-broker-{}.toml", free_port()));
        // The file's frontend is overridden by the flag.
        std::fs::write(
            &path,
            format!(
                "frontend = \"tcp://127.0.0.1:1\"\nbackend = \"{back}\"\n\
                 heartbeat = \"100ms\"\nhwm = 1000\nstats_log_interval = \"100ms\"\n"
            ),
        )
        .unwrap();
        let config = path.to_str().unwrap();
        let b = Proc::start(&["broker", "--config", config, "--frontend", &front]);
        b.expect_line(&format!("broker frontend={front} backend={back}"));
        b.expect_log("broker stats");
        wait_workers(&front, 0);
        // A misspelt key is an error naming it, not a setting ignored.
        std::fs::write(
            &path,
            format!("frontend = \"{front}\"\nbakend = \"{back}\"\n"),
        )
        .unwrap();
        let (code, _, err) = run(&["broker", "--config", config]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("unknown field `bakend`"), "{err}");
        // A missing endpoint is named.
        std::fs::write(&path, format!("frontend = \"{front}\"\n")).unwrap();
        let (code, _, err) = run(&["broker", "--config", config]);
        assert_eq!(code, 1, "{err}");
        assert_single_error_line(&err, "`backend` must name an endpoint");
        let _ = std::fs::remove_file(&path);
    });
}

#[test]
fn sigterm_stops_the_broker_gracefully() {
    limited(|| {
        let mut c = broker(&[]);
        let w = first_worker(&c, &["--type", "echo", "--echo"]);
        c.broker.signal("TERM");
        assert_eq!(c.broker.wait().code(), Some(0));
        // The worker was told and lives on, waiting to reconnect.
        std::thread::sleep(Duration::from_millis(200));
        let mut w = w;
        assert!(
            w.child.try_wait().unwrap().is_none(),
            "the worker should keep running"
        );
        w.signal("TERM");
        assert_eq!(w.wait().code(), Some(0));
    });
}

#[test]
fn bad_input_gives_one_clear_line_and_a_non_zero_exit() {
    limited(|| {
        let (code, _, err) = run(&["broker", "--frontend"]);
        assert_eq!(code, 2, "{err}");
        let (code, _, err) = run(&[
            "broker",
            "--frontend",
            "udp://x",
            "--backend",
            "tcp://127.0.0.1:1",
        ]);
        assert_eq!(code, 1);
        assert_single_error_line(&err, "udp://x");
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let (code, _, err) = run(&[
            "broker",
            "--frontend",
            &ep(port),
            "--backend",
            &ep(free_port()),
        ]);
        assert_eq!(code, 1);
        assert_single_error_line(&err, "cannot bind");
        let (code, _, err) = run(&["broker", "--config", "/nonexistent/broker.toml"]);
        assert_eq!(code, 1);
        assert_single_error_line(&err, "cannot read");
        let (code, _, err) = run(&["request", "--to", "tcp://127.0.0.1:1", "--type", "0"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("reserved"), "{err}");
    });
}

#[test]
fn keygen_keys_and_a_curve_round_trip() {
    use std::os::unix::fs::PermissionsExt;
    limited(|| {
        // The keys made here, checked as they are made.
        let (dir, name) = key_dir("keys", &[]);
        for role in ["broker", "client", "worker"] {
            let (code, out, err) = run(&["keygen", &name(role)]);
            assert_eq!(code, 0, "{err}");
            let public = std::fs::read_to_string(name(&format!("{role}.pub"))).unwrap();
            assert_eq!(out.trim(), public.trim());
            let mode = std::fs::metadata(name(&format!("{role}.key")))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Never over an existing key.
        let (code, _, err) = run(&["keygen", &name("broker")]);
        assert_eq!(code, 1);
        assert_single_error_line(&err, "broker.key");

        // Only the listed client and worker get in.
        std::fs::copy(name("client.pub"), name("clients.keys")).unwrap();
        std::fs::copy(name("worker.pub"), name("workers.keys")).unwrap();
        let c = broker(&[
            "--secret-key",
            &name("broker.key"),
            "--client-keys",
            &name("clients.keys"),
            "--worker-keys",
            &name("workers.keys"),
        ]);
        let server_key = name("broker.pub");
        let keyed = |own: &str, rest: &[&str]| -> Vec<String> {
            let mut args = vec!["--server-key".to_owned(), server_key.clone()];
            args.extend(["--secret-key".to_owned(), name(own)]);
            args.extend(rest.iter().map(|a| (*a).to_owned()));
            args
        };
        let worker_args = keyed("worker.key", &["--type", "echo", "--echo"]);
        let _w = worker(&c.back, &strs(&worker_args));
        let client_args = keyed("client.key", &["--type", "echo", "--payload", "sealed"]);
        let (code, out, err) = request(&c.front, &strs(&client_args));
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("sealed"), "{out}");
        // Without the broker's key: the keys are named, not "cannot reach".
        // (Which side notices the mismatch first is a race: "refused the
        // handshake: a security mismatch", or "closed the handshake … or
        // it requires CURVE keys"; both name the keys.)
        let (code, out, _) = request(&c.front, &["--type", "echo", "--connect-timeout", "500ms"]);
        assert_eq!(code, 12, "{out}");
        assert!(
            out.contains("handshake") && out.contains("CURVE keys"),
            "{out}"
        );
        let (code, _, err) = run(&["stats", "--broker", &c.front, "--connect-timeout", "500ms"]);
        assert_eq!(code, 1);
        assert_single_error_line(&err, "CURVE keys");

        // A secret key others can read is refused, with the fix.
        std::fs::set_permissions(name("client.key"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let (code, _, err) = request(&c.front, &strs(&client_args));
        assert_eq!(code, 1);
        assert_single_error_line(&err, "chmod 600");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// The `&str`s of `args`.
fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn assert_single_error_line(stderr: &str, needle: &str) {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(needle), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

/// Runs `lhcluster bench` on 300 small requests with `extra` flags and
/// checks that they all completed without error; the JSON report.
fn bench_report(extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "bench",
        "--systems",
        "lhcluster",
        "--count",
        "300",
        "--warmup",
        "0s",
        "--window",
        "8",
        "--capacity",
        "8",
        "--json",
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{extra:?}: {err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    let run = &report["systems"][0]["median"];
    assert!(
        run["completed"].as_u64().unwrap() >= 300,
        "{extra:?}: {run}"
    );
    assert_eq!(run["errors"].as_u64(), Some(0), "{extra:?}: {run}");
    report
}

#[test]
fn bench_runs_each_client_and_worker_mode_to_completion() {
    // Smoke test of the load generator itself (figures are not asserted:
    // timing belongs to benchmarks): every mode completes its requests
    // without errors and reports them.
    limited(|| {
        for mode in [
            &[][..],
            &["--inline", "--local-client"][..],
            &["--proxy", "--local-client"][..],
            &["--one-way", "--receipt", "received", "--local-client"][..],
        ] {
            let report = bench_report(mode);
            // One broker is no cluster: no broker-to-broker hops reported.
            let run = &report["systems"][0]["median"];
            assert!(run.get("cluster").is_none(), "{mode:?}: {run}");
        }
        // One-way without a receipt gives a local client nothing to poll for.
        let (code, _, err) = run(&["bench", "--one-way", "--local-client", "--count", "10"]);
        assert_ne!(code, 0);
        assert!(err.contains("--local-client needs"), "{err}");
    });
}

#[test]
fn bench_runs_a_cluster_of_brokers_in_each_placement() {
    // Smoke test of `--brokers` (figures are not asserted): each placement
    // completes its requests without errors, and the broker-to-broker hops
    // it reports are the ones the placement means.
    limited(|| {
        let hops = |args: &[&str]| -> (serde_json::Value, f64, f64) {
            let report = bench_report(args);
            let h = &report["systems"][0]["median"]["cluster"];
            let f = h["forwarded_per_req"].as_f64().expect("hops reported");
            let e = h["executed_per_req"].as_f64().expect("hops reported");
            (report, f, e)
        };
        // Split: every request crosses once. The ids the clients' client
        // picks are owned by the clients' broker, which has them run on the
        // workers' broker (EXECUTE).
        let (report, f, e) = hops(&["--brokers", "2", "--placement", "split"]);
        assert_eq!(report["config"]["brokers"].as_u64(), Some(2));
        assert_eq!(report["config"]["placement"].as_str(), Some("split"));
        assert_eq!(
            report["systems"][0]["name"].as_str(),
            Some("lhcluster-2-split")
        );
        assert_eq!((f, e), (0.0, 1.0));
        // Split with ids the benchmark names: those the workers' broker owns
        // are forwarded to it, the others executed there.
        let (_, f, e) = hops(&["--brokers", "2", "--placement", "split", "--own-ids"]);
        assert!(
            f > 0.0 && e > 0.0 && (f + e - 1.0).abs() < 1e-9,
            "{f} + {e}"
        );
        // Same broker, picked ids: nothing leaves it.
        let (_, f, e) = hops(&["--brokers", "2", "--placement", "same"]);
        assert_eq!((f, e), (0.0, 0.0));
        // Same broker, named ids: those the other broker owns go there and
        // back (one FORWARD and one EXECUTE each), the others stay.
        let (report, f, e) = hops(&["--brokers", "2", "--placement", "same", "--own-ids"]);
        assert_eq!(
            report["systems"][0]["name"].as_str(),
            Some("lhcluster-2-same-own-ids")
        );
        assert!(f > 0.0 && f < 1.0 && (f - e).abs() < 1e-9, "{f}, {e}");
        // Spread over three brokers, a client and a worker on each.
        let spread = [
            "--brokers",
            "3",
            "--placement",
            "spread",
            "--clients",
            "3",
            "--workers",
            "3",
        ];
        // With picked ids each client's requests stay on its broker, which
        // has a worker of its own; with named ids, most cross.
        assert_eq!(hops(&spread).1, 0.0);
        let own_spread: Vec<&str> = spread.iter().copied().chain(["--own-ids"]).collect();
        let (_, f, e) = hops(&own_spread);
        assert!(f > 0.0, "{f}, {e}");
        // A cluster is in-process only, and needs at least one broker.
        let (code, _, err) = run(&["bench", "--brokers", "0", "--count", "10"]);
        assert_ne!(code, 0);
        assert!(err.contains("--brokers must be at least 1"), "{err}");
        let (code, _, err) = run(&["bench", "--brokers", "2", "--proxy"]);
        assert_eq!(code, 2, "{err}");
    });
}

/// A typed request, as a Rust service defines it: the CLI reaches it with
/// `--type math.add --payload-json '{"a":…,"b":…}'`.
#[derive(serde::Serialize, serde::Deserialize, lhcluster::Request)]
#[request_type(name = "math.add", response = Sum)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Sum {
    sum: i64,
    terms: Vec<i64>,
}

/// A typed worker in this process, serving `math.add` at `back`.
fn typed_worker(back: &str) -> lhcluster::worker::Worker {
    let mut config = lhcluster::worker::WorkerConfig::new(back);
    config.heartbeat = Duration::from_millis(100);
    lhcluster::worker::Worker::builder(config)
        .handle(|add: Add, _: &lhcluster::worker::RequestContext| Sum {
            sum: add.a + add.b,
            terms: vec![add.a, add.b],
        })
        .start()
        .unwrap()
}

#[test]
fn json_in_and_out_through_a_typed_worker() {
    limited(|| {
        let c = broker(&[]);
        let typed = typed_worker(&c.back);
        let _echo = worker(&c.back, &["--type", "echo", "--echo"]);
        wait_workers(&c.front, 2);
        let add = |extra: &[&str]| {
            let mut args = vec!["--type", "math.add", "--payload-json", r#"{"a":1,"b":-3}"#];
            args.extend_from_slice(extra);
            request(&c.front, &args)
        };
        // JSON in, MessagePack to the typed handler, its reply shown as JSON.
        let (code, out, err) = add(&[]);
        assert_eq!(code, 0, "{out}\n{err}");
        assert_eq!(
            out,
            r#"status: ok
{"sum":-2,"terms":[1,-3]}"#
        );
        // In a JSON line: the reply as a value, not a lossy string.
        let (code, out, _) = add(&["--json", "--id", "4"]);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["payload"],
            serde_json::json!({"sum": -2, "terms": [1, -3]})
        );
        // The bytes as they are with --raw: the MessagePack document.
        let (code, out, _) = run_with(
            &request_args(
                &c.front,
                &["--type", "math.add", "--payload-json", "-", "--raw"],
            ),
            &[],
            br#"{"a": 2, "b": 2}"#,
        );
        assert_eq!(code, 0);
        let expected = rmp_serde::to_vec_named(&Sum {
            sum: 4,
            terms: vec![2, 2],
        })
        .unwrap();
        assert_eq!(out, [&b"status: ok\n"[..], &expected].concat());
        // Text bytes are not JSON: the handler says what it expected.
        let (code, out, _) = request(&c.front, &["--type", "math.add", "--payload", "{\"a\":1}"]);
        assert_eq!(code, 4, "{out}");
        assert!(out.starts_with("status: bad_request\nerror: "), "{out}");
        // Plain text stays text, from an argument or from stdin.
        let (code, out, _) = request(&c.front, &["--type", "echo", "--payload", "hi"]);
        assert_eq!((code, out.as_str()), (0, "status: ok\nhi"));
        let (code, out, _) = run_with(
            &request_args(&c.front, &["--type", "echo", "--payload", "-"]),
            &[],
            b"from stdin",
        );
        assert_eq!(code, 0);
        assert_eq!(String::from_utf8(out).unwrap(), "status: ok\nfrom stdin\n");
        // Invalid JSON is refused before anything is sent.
        let (code, _, err) = request(&c.front, &["--type", "math.add", "--payload-json", "{a:1}"]);
        assert_eq!(code, 1);
        assert_single_error_line(&err, "--payload-json is not valid JSON");
        // Two payload sources: a usage error naming them.
        let (code, _, err) = request(
            &c.front,
            &["--type", "echo", "--payload", "x", "--payload-json", "{}"],
        );
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("--payload-json"), "{err}");
        typed.stop().unwrap();
    });
}

#[test]
fn subscribe_shows_messagepack_as_json_and_text_as_text() {
    limited(|| {
        let (_nb, front, back) = notify_broker(&[]);
        let sub = Proc::start(&["subscribe", "--to", &front, "orders", "--count", "3"]);
        sub.expect_log("subscribed");
        let publish = |extra: &[&str]| {
            let mut args = vec!["publish", "--to", &back, "orders"];
            args.extend_from_slice(extra);
            let (code, _, err) = run(&args);
            assert_eq!(code, 0, "{err}");
        };
        publish(&["--payload-json", r#"{"id":7,"items":["tea"]}"#]);
        publish(&["hi"]);
        let (code, _, err) = run_with(&["publish", "--to", &back, "orders", "-"], &[], b"piped");
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            sub.expect_line("orders"),
            r#"orders {"id":7,"items":["tea"]}"#
        );
        assert_eq!(sub.expect_line("orders"), "orders hi");
        assert_eq!(sub.expect_line("orders"), "orders piped");
    });
}

#[test]
fn a_broker_that_is_not_there_is_reported_within_the_connect_timeout() {
    limited(|| {
        // Nothing listens here.
        let nowhere = ep(free_port());
        let started = Instant::now();
        let (code, out, err) = request(&nowhere, &["--type", "echo", "--connect-timeout", "500ms"]);
        assert_eq!(code, 12, "{out}\n{err}");
        assert_eq!(
            out,
            format!(
                "status: connection\nerror: cannot reach the broker at {nowhere} (no answer within 500ms)"
            )
        );
        // As JSON: no request was made, so it has no id (unless given).
        let (code, out, _) = request(
            &nowhere,
            &["--type", "echo", "--connect-timeout", "500ms", "--json"],
        );
        assert_eq!(code, 12);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"], "connection");
        assert!(v["request_id"].is_null(), "{out}");
        let (code, _, err) = run(&["stats", "--broker", &nowhere, "--connect-timeout", "500ms"]);
        assert_eq!(code, 1);
        assert_single_error_line(
            &err,
            &format!("cannot reach the broker at {nowhere} (no answer within 500ms)"),
        );
        let (code, _, err) = run(&[
            "publish",
            "--to",
            &nowhere,
            "orders",
            "--connect-timeout",
            "500ms",
        ]);
        assert_eq!(code, 1);
        assert_single_error_line(
            &err,
            &format!("cannot reach the notify broker at {nowhere}"),
        );
        // Three commands, each bounded by its 500 ms, not by the 30 s
        // request timeout (loosely: a loaded machine starts them slowly).
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            started.elapsed()
        );
    });
}

#[test]
fn the_wrong_side_of_a_notify_broker_is_named_at_once() {
    limited(|| {
        let (_nb, front, back) = notify_broker(&[]);
        let (code, _, err) = run(&["publish", "--to", &front, "orders", "x"]);
        assert_eq!(code, 1);
        assert_single_error_line(&err, "does not take publishers");
        let (code, _, err) = run(&["subscribe", "--to", &back, "orders"]);
        assert_eq!(code, 1);
        assert_single_error_line(&err, "does not take subscribers");
        // A request sent there is told it is not a broker.
        let (code, out, _) = request(&front, &["--type", "echo", "--connect-timeout", "300ms"]);
        assert_eq!(code, 12, "{out}");
        assert!(
            out.contains(&format!(
                "{front} closed the handshake: it is not a broker's endpoint"
            )),
            "{out}"
        );
    });
}

#[test]
fn endpoints_default_from_the_environment() {
    limited(|| {
        let c = broker(&[]);
        let _w = first_worker(&c, &["--type", "echo", "--echo"]);
        let env = [("LHCLUSTER_BROKER", c.front.as_str())];
        let (code, out, err) = run_with(
            &["request", "--type", "echo", "--payload", "env"],
            &env,
            b"",
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(String::from_utf8(out).unwrap(), "status: ok\nenv\n");
        let (code, out, err) = run_with(&["stats", "--json"], &env, b"");
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["requests_completed"], 1);
        // A flag wins over the variable.
        let nowhere = ep(free_port());
        let env = [("LHCLUSTER_BROKER", nowhere.as_str())];
        let (code, out, _) = run_with(
            &[
                "request",
                "--to",
                &c.front,
                "--type",
                "echo",
                "--payload",
                "flag",
            ],
            &env,
            b"",
        );
        assert_eq!(
            (code, String::from_utf8(out).unwrap().as_str()),
            (0, "status: ok\nflag\n")
        );
        // Without either, the usage error names both.
        let (code, _, err) = run_with(&["request", "--type", "echo"], &[], b"");
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("--to"), "{err}");
    });
}

/// An HTTP GET on the metrics listener: (status line, body).
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[test]
fn healthz_answers_next_to_metrics_and_a_bad_address_is_refused_before_starting() {
    limited(|| {
        let (c, addr) = metrics_broker();
        let (status, body) = http_get(&addr, "/healthz");
        assert!(status.contains(" 200"), "{status}");
        assert_eq!(body, "ok\n");
        let (status, _) = http_get(&addr, "/nothing");
        assert!(status.contains(" 404"), "{status}");
        // The proxy and the notify broker too.
        let proxy_addr = format!("127.0.0.1:{}", free_port());
        let (_proxy, _) = proxy(&c.front, &["--metrics", &proxy_addr]);
        assert!(http_get(&proxy_addr, "/healthz").0.contains(" 200"));
        let nb_addr = format!("127.0.0.1:{}", free_port());
        let nb = Proc::start(&[
            "notify-broker",
            "--subscribers",
            &ep(free_port()),
            "--publishers",
            &ep(free_port()),
            "--metrics",
            &nb_addr,
        ]);
        nb.expect_line("notify-broker ");
        assert!(http_get(&nb_addr, "/healthz").0.contains(" 200"));
        let (status, body) = http_get(&nb_addr, "/metrics");
        assert!(status.contains(" 200"), "{status}");
        assert!(
            body.contains("lhcluster_notify_broker_forwarded_total 0"),
            "{body}"
        );
        // `lhcluster broker` on free ports, with `--metrics` at `metrics`.
        let front = ep(free_port());
        let broker_with_metrics = |metrics: &str| {
            let back = ep(free_port());
            run(&[
                "broker",
                "--frontend",
                &front,
                "--backend",
                &back,
                "--metrics",
                metrics,
            ])
        };
        // A bare port is a usage error, before any socket is bound.
        let (code, out, err) = broker_with_metrics("9100");
        assert_eq!(code, 2, "{err}");
        assert!(out.is_empty(), "{out}");
        assert!(
            err.contains("bare port") && err.contains("127.0.0.1:9100"),
            "{err}"
        );
        // A port in use: refused before the broker starts (no ready line).
        let (code, out, err) = broker_with_metrics(&addr);
        assert_eq!(code, 1, "{err}");
        assert!(out.is_empty(), "{out}");
        assert_single_error_line(&err, "cannot serve metrics");
    });
}

#[test]
fn ready_lines_show_endpoints_as_bound_and_usage_errors_name_the_alternatives() {
    limited(|| {
        let b = Proc::start(&[
            "broker",
            "--frontend",
            "tcp://*:0",
            "--backend",
            "tcp://127.0.0.1:0",
        ]);
        let line = b.expect_line("broker ");
        let words: Vec<&str> = line.split(' ').collect();
        assert!(words[1].starts_with("frontend=tcp://0.0.0.0:"), "{line}");
        assert!(words[2].starts_with("backend=tcp://127.0.0.1:"), "{line}");
        assert!(!line.contains(":0 ") && !line.ends_with(":0"), "{line}");
        // A worker needs a mode: the error names both.
        let (code, _, err) = run(&["worker", "--broker", "tcp://127.0.0.1:1", "--type", "x"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("--echo") && err.contains("--exec"), "{err}");
        let (code, _, err) = run(&[
            "worker",
            "--broker",
            "tcp://127.0.0.1:1",
            "--type",
            "x",
            "--echo",
            "--exec",
            "cat",
        ]);
        assert_eq!(code, 2, "{err}");
        // Every flag of every command has a help text.
        for command in [
            "broker",
            "proxy",
            "notify-broker",
            "up",
            "request",
            "worker",
            "publish",
            "subscribe",
            "stats",
            "keygen",
        ] {
            let (code, out, _) = run(&[command, "--help"]);
            assert_eq!(code, 0);
            let lines: Vec<&str> = out.lines().collect();
            for (i, l) in lines.iter().enumerate() {
                let flag = l.trim_start();
                if !(l.starts_with("  ") && flag.starts_with("--")) {
                    continue;
                }
                // Help follows on the same line or, for a long one, the next.
                let same = flag.split("  ").filter(|p| !p.trim().is_empty()).count() > 1;
                let next = lines
                    .get(i + 1)
                    .is_some_and(|n| n.starts_with("          "));
                assert!(same || next, "{command}: no help for {flag:?}\n{out}");
            }
        }
    });
}

#[test]
fn the_old_notify_flag_names_still_work_with_a_warning() {
    limited(|| {
        let (front, back) = (ep(free_port()), ep(free_port()));
        let nb = Proc::start(&["notify-broker", "--frontend", &front, "--backend", &back]);
        nb.expect_line(&format!(
            "notify-broker subscribers={front} publishers={back}"
        ));
        nb.expect_log("--frontend is deprecated: use --subscribers");
    });
}

#[test]
fn a_proxy_that_never_reached_its_broker_says_not_connected() {
    limited(|| {
        let nowhere = ep(free_port());
        let (p, _) = proxy(&nowhere, &[]);
        let line = p.expect_log("not connected to the broker at");
        assert!(line.contains(&nowhere), "{line}");
        assert!(!p.stderr_text().contains("missed its heartbeats"));
    });
}

/// SIGHUP makes `lhcluster broker` read its key files again: a key added
/// gets in, a connection still allowed is kept (no reconnect), a key
/// removed is refused from its next request (FORBIDDEN, its connection
/// being already made), and a file that does not read changes nothing.
#[test]
fn sighup_reloads_the_key_files() {
    limited(|| {
        let (dir, name) = key_dir("hup", &["broker", "a", "b", "worker"]);
        let public = |role: &str| std::fs::read_to_string(name(&format!("{role}.pub"))).unwrap();
        let clients = name("clients.keys");
        std::fs::write(&clients, public("a")).unwrap();
        std::fs::write(
            name("workers.keys"),
            format!("{} echo", public("worker").trim()),
        )
        .unwrap();
        let c = broker(&[
            "--secret-key",
            &name("broker.key"),
            "--client-keys",
            &clients,
            "--worker-keys",
            &name("workers.keys"),
        ]);
        let server_key = name("broker.pub");
        let _w = worker(
            &c.back,
            &[
                "--server-key",
                &server_key,
                "--secret-key",
                &name("worker.key"),
                "--type",
                "echo",
                "--echo",
            ],
        );
        let as_b =
            |payload: &str| request_with_keys(&c.front, &server_key, &name("b.key"), payload);
        // A, connected for the whole test, through the library.
        let a = keyed_client(&c.front, &server_key, &name("a.key"));
        echo_from(&a, 1).unwrap().wait().unwrap();
        let (code, _, _) = as_b("first");
        assert_ne!(code, 0, "B is not listed yet");

        let hup = |expect: &str| {
            let status = std::process::Command::new("kill")
                .args(["-HUP", &c.broker.pid().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            c.broker.expect_log(expect);
        };
        reload_client_keys(&clients, (&public("a"), &public("b")), &a, as_b, hup);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// A fresh directory of key pairs made by `lhcluster keygen`, one per
/// name, and a function giving a path in it.
fn key_dir(tag: &str, names: &[&str]) -> (std::path::PathBuf, impl Fn(&str) -> String) {
    let dir = std::env::temp_dir().join(format!("lhcluster-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let base = dir.clone();
    let name = move |n: &str| base.join(n).to_string_lossy().into_owned();
    for role in names {
        let (code, _, err) = run(&["keygen", &name(role)]);
        assert_eq!(code, 0, "{err}");
    }
    (dir, name)
}

/// What a reload of a client key file must do, once A (listed, connected
/// as `a`) and B (not listed; `as_b` sends through the CLI) exist and
/// `hup` signals the daemon and waits for its log line: B added gets in
/// while A's connection is kept; a file that does not read changes
/// nothing; A removed keeps its connection but is refused FORBIDDEN.
fn reload_client_keys(
    clients: &str,
    (a_pub, b_pub): (&str, &str),
    a: &lhcluster::client::Client,
    as_b: impl Fn(&str) -> (i32, String, String),
    hup: impl Fn(&str),
) {
    std::fs::write(clients, format!("{a_pub}{b_pub}")).unwrap();
    hup("SIGHUP: key files reloaded");
    let (code, out, err) = as_b("second");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("second"), "{out}");
    echo_from(a, 2).unwrap().wait().unwrap();
    assert_eq!(a.stats().unwrap().reconnects, 0, "A's connection was kept");

    // A file that does not read: logged, the lists in force stay.
    std::fs::write(clients, "not a key\n").unwrap();
    hup("SIGHUP: reload failed");
    echo_from(a, 3).unwrap().wait().unwrap();

    // A removed: its connection stays, its requests are refused.
    std::fs::write(clients, b_pub).unwrap();
    hup("SIGHUP: key files reloaded");
    let refused = echo_from(a, 4).unwrap().wait().unwrap_err();
    assert!(refused.is_forbidden(), "{refused:?}");
    let (code, _, err) = as_b("third");
    assert_eq!(code, 0, "{err}");
}

/// A client of `endpoint` with the server's public key file and its own
/// secret key file.
fn keyed_client(endpoint: &str, server_key: &str, secret_key: &str) -> lhcluster::client::Client {
    use lhcluster::curve::{read_public_key, read_secret_key};
    let mut config = lhcluster::client::ClientConfig::new(endpoint);
    config.curve_server_key = Some(read_public_key(server_key).unwrap());
    config.curve_secret_key = Some(read_secret_key(secret_key).unwrap());
    config.request_timeout = Some(Duration::from_secs(5));
    lhcluster::client::Client::connect(config).unwrap()
}

/// An `echo` request with payload "a" and id `id`, sent by `client`.
fn echo_from(
    client: &lhcluster::client::Client,
    id: u64,
) -> Result<lhcluster::client::ResponseHandle, lhcluster::Error> {
    let echo = lhcluster::request_type_id("echo");
    client.send(
        echo,
        id,
        lhcluster::Flags::empty(),
        vec![b"a".as_slice().into()],
    )
}

/// `lhcluster request` of `echo` with `payload` and the given key files:
/// (exit code, stdout, stderr).
fn request_with_keys(
    endpoint: &str,
    server_key: &str,
    secret_key: &str,
    payload: &str,
) -> (i32, String, String) {
    let args = [
        "--server-key",
        server_key,
        "--secret-key",
        secret_key,
        "--type",
        "echo",
        "--payload",
        payload,
        "--timeout",
        "2s",
    ];
    request(endpoint, &args)
}

/// SIGHUP makes `lhcluster proxy` read its client key file again, as the
/// broker does: a key added gets in, a connection still allowed is kept,
/// a key removed is refused FORBIDDEN from its next request, and a file
/// that does not read changes nothing.
#[test]
fn sighup_reloads_the_proxys_client_keys() {
    limited(|| {
        let (dir, name) = key_dir("proxy-hup", &["proxy", "a", "b"]);
        let public = |role: &str| std::fs::read_to_string(name(&format!("{role}.pub"))).unwrap();
        let clients = name("clients.keys");
        std::fs::write(&clients, public("a")).unwrap();
        let c = broker(&[]);
        let _w = worker(&c.back, &["--type", "echo", "--echo"]);
        let (proxy, bind) = proxy(
            &c.front,
            &[
                "--secret-key",
                &name("proxy.key"),
                "--client-keys",
                &clients,
            ],
        );
        let server_key = name("proxy.pub");
        let as_b = |payload: &str| request_with_keys(&bind, &server_key, &name("b.key"), payload);
        let a = keyed_client(&bind, &server_key, &name("a.key"));
        echo_from(&a, 1).unwrap().wait().unwrap();
        let (code, _, _) = as_b("first");
        assert_ne!(code, 0, "B is not listed yet");

        let hup = |expect: &str| {
            proxy.signal("HUP");
            proxy.expect_log(expect);
        };
        reload_client_keys(&clients, (&public("a"), &public("b")), &a, as_b, hup);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// SIGHUP makes `lhcluster notify-broker` read its key files again: a
/// publisher key added gets in, the subscriber connected all along keeps
/// receiving, a publisher whose key is removed has its notifications
/// dropped and counted (its connection being already made), and a file
/// that does not read changes nothing.
#[test]
fn sighup_reloads_the_notify_brokers_key_files() {
    use lhcluster::curve::{read_public_key, read_secret_key};
    use lhcluster::notify::{
        NotifyOutcome, NotifyPublisher, NotifyPublisherConfig, NotifySubscriber,
        NotifySubscriberConfig, RawNotification,
    };
    limited(|| {
        let (dir, name) = key_dir("notify-hup", &["nb", "sub", "p1", "p2"]);
        let public = |role: &str| std::fs::read_to_string(name(&format!("{role}.pub"))).unwrap();
        let (subs, pubs) = (name("subs.keys"), name("pubs.keys"));
        std::fs::write(&subs, public("sub")).unwrap();
        std::fs::write(&pubs, public("p1")).unwrap();
        let (front, back) = (ep(free_port()), ep(free_port()));
        let metrics = format!("127.0.0.1:{}", free_port());
        let nb = Proc::start(&[
            "notify-broker",
            "--subscribers",
            &front,
            "--publishers",
            &back,
            "--metrics",
            &metrics,
            "--secret-key",
            &name("nb.key"),
            "--subscriber-keys",
            &subs,
            "--publisher-keys",
            &pubs,
        ]);
        nb.expect_line("notify-broker subscribers=");
        let server_key = name("nb.pub");
        let server = read_public_key(&server_key).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut config = NotifySubscriberConfig::new(&front).topic("t");
        config.curve_server_key = Some(server);
        config.curve_secret_key = Some(read_secret_key(name("sub.key")).unwrap());
        let tx = std::sync::Mutex::new(tx);
        let _sub = NotifySubscriber::connect(config, move |n: RawNotification| {
            let _ = tx
                .lock()
                .unwrap()
                .send(String::from_utf8_lossy(&n.payload[0]).into_owned());
            NotifyOutcome::Continue
        })
        .unwrap();
        let mut config = NotifyPublisherConfig::new(&back);
        config.curve_server_key = Some(server);
        config.curve_secret_key = Some(read_secret_key(name("p1.key")).unwrap());
        let p1 = NotifyPublisher::connect(config).unwrap();
        let as_p2 = |payload: &str| {
            let args = [
                "publish",
                "--to",
                &back,
                "--server-key",
                &server_key,
                "--secret-key",
                &name("p2.key"),
                "--connect-timeout",
                "1s",
                "t",
                payload,
            ];
            run(&args)
        };
        let next = || rx.recv_timeout(LIMIT).unwrap();
        p1.publish("t", vec![b"one".as_slice().into()]).unwrap();
        assert_eq!(next(), "one");
        let (code, _, _) = as_p2("refused");
        assert_ne!(code, 0, "P2 is not listed yet");

        let hup = |expect: &str| {
            nb.signal("HUP");
            nb.expect_log(expect);
        };
        std::fs::write(&pubs, format!("{}{}", public("p1"), public("p2"))).unwrap();
        hup("SIGHUP: key files reloaded");
        let (code, _, err) = as_p2("two");
        assert_eq!(code, 0, "{err}");
        assert_eq!(next(), "two");

        std::fs::write(&subs, "not a key\n").unwrap();
        hup("SIGHUP: reload failed");
        std::fs::write(&subs, public("sub")).unwrap();

        std::fs::write(&pubs, public("p2")).unwrap();
        hup("SIGHUP: key files reloaded");
        p1.publish("t", vec![b"dropped".as_slice().into()]).unwrap();
        let deadline = Instant::now() + LIMIT;
        while !http_get(&metrics, "/metrics")
            .1
            .contains("lhcluster_notify_broker_notifications_forbidden_total 1")
        {
            assert!(Instant::now() < deadline, "P1's notification never refused");
            std::thread::sleep(Duration::from_millis(20));
        }
        let (code, _, err) = as_p2("three");
        assert_eq!(code, 0, "{err}");
        assert_eq!(next(), "three", "P1's was dropped, the subscriber kept");
        assert_eq!(
            p1.stats().unwrap().connections,
            1,
            "P1's connection was kept"
        );
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// SIGHUP makes `lhcluster up` read its file again and put each role's key
/// lists in force (here a proxy's client list): a key added gets in, the
/// connection still allowed is kept; a file that now declares another
/// number of roles changes nothing; SIGHUP never stops the cluster.
#[test]
fn sighup_reloads_the_key_lists_of_an_up_file() {
    limited(|| {
        let (dir, name) = key_dir("up-hup", &["proxy", "a", "b"]);
        // A key file's key: its line that is not a comment.
        let text = |role: &str| {
            let text = std::fs::read_to_string(name(role)).unwrap();
            let key = text
                .lines()
                .find(|l| !l.trim().is_empty() && !l.starts_with('#'));
            key.unwrap().trim().to_owned()
        };
        let (front, back, bind) = (ep(free_port()), ep(free_port()), ep(free_port()));
        let file = |clients: &[&str], proxies: usize| {
            let keys: Vec<String> = clients
                .iter()
                .map(|c| format!("\"{}\"", text(&format!("{c}.pub"))))
                .collect();
            let mut toml = format!("[[broker]]\nfrontend = \"{front}\"\nbackend = \"{back}\"\n");
            for _ in 0..proxies {
                toml += &format!(
                    "[[proxy]]\nbind = \"{bind}\"\nbrokers = [\"{front}\"]\n\
                     curve_secret_key = \"{}\"\ncurve_client_keys = [{}]\n",
                    text("proxy.key"),
                    keys.join(", ")
                );
            }
            std::fs::write(name("cluster.toml"), toml).unwrap();
        };
        file(&["a"], 1);
        let up = Proc::start(&["up", &name("cluster.toml")]);
        up.expect_line("cluster up");
        let _w = worker(&back, &["--type", "echo", "--echo"]);
        wait_workers(&front, 1);
        let server_key = name("proxy.pub");
        let as_b = || request_with_keys(&bind, &server_key, &name("b.key"), "b");
        let a = keyed_client(&bind, &server_key, &name("a.key"));
        echo_from(&a, 1).unwrap().wait().unwrap();
        assert_ne!(as_b().0, 0, "B is not listed yet");

        file(&["a"], 2);
        up.signal("HUP");
        up.expect_log("SIGHUP: reload failed");
        file(&["a", "b"], 1);
        up.signal("HUP");
        up.expect_log("SIGHUP: key files reloaded");
        let (code, _, err) = as_b();
        assert_eq!(code, 0, "{err}");
        echo_from(&a, 2).unwrap().wait().unwrap();
        assert_eq!(a.stats().unwrap().reconnects, 0, "A's connection was kept");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// Ctrl-C while `request` waits takes the request back at the broker
/// (CANCEL): a queued one is taken out of the queue and never runs; the
/// tool says `cancelled` and exits 130.
#[test]
fn interrupting_request_cancels_it_at_the_broker() {
    limited(|| {
        let c = broker(&[]);
        let mut req = Proc::start(&[
            "request",
            "--to",
            &c.front,
            "--type",
            "nobody.serves.this",
            "--timeout",
            "30s",
        ]);
        let counts = || {
            let (_, out, _) = run(&["stats", "--broker", &c.front, "--json"]);
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            (v["pending"].as_u64(), v["requests_cancelled"].as_u64())
        };
        let until = |want: (Option<u64>, Option<u64>), what: &str| {
            let deadline = Instant::now() + LIMIT;
            while counts() != want {
                assert!(Instant::now() < deadline, "{what}");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        until((Some(1), Some(0)), "the request was never queued");
        req.signal("INT");
        assert_eq!(req.wait().code(), Some(130));
        assert_eq!(req.expect_line("status:"), "status: cancelled");
        until((Some(0), Some(1)), "the broker never took the request back");
    });
}
