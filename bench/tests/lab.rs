//! The lab's own modes, run as a user runs them: a window sweep drawn as
//! SVG (and redrawn from its JSON), and the broker's memory per pending
//! request. Figures are not asserted (timing belongs to benchmarks): each
//! mode completes, without errors, and reports what it measured.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_lhcluster-bench");
const LIMIT: Duration = Duration::from_secs(60);

/// Runs the lab with `args`; (exit code, stdout, stderr). Killed and failed
/// after `LIMIT`.
fn run(args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lhcluster-bench starts");
    // Each pipe reaches its end when the process exits.
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            let _ = tx.send(text);
        });
        rx
    };
    let out = read_all(Box::new(child.stdout.take().unwrap()));
    let err = read_all(Box::new(child.stderr.take().unwrap()));
    let Ok(stdout) = out.recv_timeout(LIMIT) else {
        let _ = child.kill();
        panic!("lhcluster-bench {args:?} exceeded its time limit");
    };
    let stderr = err.recv_timeout(LIMIT).unwrap_or_default();
    let status = child.wait().expect("lhcluster-bench exits");
    (status.code().unwrap_or(-1), stdout, stderr)
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "lhcluster-bench-test-{}-{name}",
        std::process::id()
    ))
}

#[test]
fn sweep_measures_every_system_at_every_window_and_draws_them() {
    let svg = temp_path("sweep.svg");
    let svg_arg = svg.to_str().unwrap();
    let (code, out, err) = run(&[
        "--plot",
        svg_arg,
        "--windows",
        "1,4",
        "--systems",
        "direct,lhcluster",
        "--count",
        "100",
        "--warmup",
        "0s",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let reports: serde_json::Value = serde_json::from_str(&out).expect("JSON sweep");
    let reports = reports.as_array().expect("one report per window");
    let windows: Vec<u64> = reports
        .iter()
        .map(|r| r["config"]["window"].as_u64().unwrap())
        .collect();
    assert_eq!(windows, [1, 4]);
    for report in reports {
        let names: Vec<&str> = report["systems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["zmq direct", "lhcluster"], "{report}");
        for s in report["systems"].as_array().unwrap() {
            assert!(s["median"]["completed"].as_u64().unwrap() >= 100, "{s}");
            assert_eq!(s["median"]["errors"].as_u64(), Some(0), "{s}");
        }
    }
    let drawn = std::fs::read_to_string(&svg).expect("the plot is written");
    assert!(drawn.starts_with("<svg"), "{drawn:.200}");
    assert!(drawn.contains("zmq direct") && drawn.contains("lhcluster"));

    // Redrawn from the JSON, without measuring: the same series.
    let json = temp_path("sweep.json");
    std::fs::write(&json, &out).unwrap();
    let redrawn = temp_path("replot.svg");
    let (code, out, err) = run(&[
        "--plot",
        redrawn.to_str().unwrap(),
        "--replot",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("plot written to"), "{out}");
    let redrawn_text = std::fs::read_to_string(&redrawn).expect("the plot is redrawn");
    assert!(redrawn_text.contains("zmq direct") && redrawn_text.contains("lhcluster"));
    for path in [svg, json, redrawn] {
        let _ = std::fs::remove_file(path);
    }
}

#[test]
fn pending_fills_a_broker_and_reports_its_memory() {
    let (code, out, err) = run(&["--pending", "2000", "--transport", "inproc", "--json"]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    assert_eq!(doc["pending"].as_u64(), Some(2000), "{doc}");
    let runs = doc["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1, "{doc}");
    assert_eq!(runs[0]["requests"].as_u64(), Some(2000), "{doc}");
    assert!(doc["median_bytes_per_request"].is_number(), "{doc}");

    // An external broker's memory is not this process's to read.
    let (code, _, err) = run(&[
        "--pending",
        "10",
        "--frontend",
        "tcp://127.0.0.1:1",
        "--backend",
        "tcp://127.0.0.1:2",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("in-process broker"), "{err}");
}
