//! Process helpers shared by the test targets that drive the `lhcluster`
//! binary (`cli`, `chaos`, `cluster`): children killed on drop, their output lines on
//! channels, every wait bounded, and a time limit per test that also cleans
//! up what a hung test leaves behind.

// Each test target uses its own subset of these helpers.
#![allow(dead_code)]

pub(crate) mod exec_log;
pub(crate) mod garbage;
pub(crate) mod load;
pub(crate) mod netns;
pub(crate) mod rss;

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_lhcluster");
/// The bound of every single wait.
pub(crate) const LIMIT: Duration = Duration::from_secs(30);

/// A free TCP port on loopback (bound then released).
/// A port free now, for a daemon to bind later, from 20000-31999: below
/// Linux's ephemeral range (32768 and up), where the kernel picks the local
/// port of every outgoing connection. A port picked there (as binding port
/// 0 does) could be taken by some test's connection before the daemon binds
/// it, and the daemon would exit at start. Each process starts at its own
/// offset and counts up, so that test binaries running side by side rarely
/// try the same ports; a port that does not bind now is skipped.
pub(crate) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(7_919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (offset + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN);
}

pub(crate) fn ep(port: u16) -> String {
    format!("tcp://127.0.0.1:{port}")
}

/// A notify broker on two fresh ports, with `extra` flags, once it has
/// printed its ready line: the process, the subscribers' endpoint and the
/// publishers'.
pub(crate) fn notify_broker(extra: &[&str]) -> (Proc, String, String) {
    let (subscribers, publishers) = (ep(free_port()), ep(free_port()));
    let mut args = vec![
        "notify-broker",
        "--subscribers",
        &subscribers,
        "--publishers",
        &publishers,
    ];
    args.extend_from_slice(extra);
    let nb = Proc::start(&args);
    nb.expect_line(&format!(
        "notify-broker subscribers={subscribers} publishers={publishers}"
    ));
    (nb, subscribers, publishers)
}

/// A child process killed when dropped, with its stdout lines on a channel.
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) lines: mpsc::Receiver<String>,
    pub(crate) stderr: mpsc::Receiver<String>,
}

/// Spawns `command` with `RUST_LOG=info`, `stdin` as its input and its
/// output piped, and records it to be killed when the tests end.
fn spawn_piped(command: &mut Command, stdin: Stdio) -> Child {
    let child = command
        .env("RUST_LOG", "info")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the process starts");
    cleanup::add_pid(child.id());
    child
}

impl Proc {
    pub(crate) fn start(args: &[&str]) -> Proc {
        Proc::spawn(Command::new(BIN).args(args))
    }

    /// Starts `command` (any program) with the same plumbing as
    /// [`Proc::start`]: piped output, `RUST_LOG=info`, killed on drop.
    pub(crate) fn spawn(command: &mut Command) -> Proc {
        let mut child = spawn_piped(command, Stdio::null());
        let lines = pipe_lines(child.stdout.take().unwrap());
        let stderr = pipe_lines(child.stderr.take().unwrap());
        Proc {
            child,
            lines,
            stderr,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stdout line containing `needle`.
    pub(crate) fn expect_line(&self, needle: &str) -> String {
        expect_in(&self.lines, needle)
    }

    /// Waits for a stderr (log) line containing `needle`.
    pub(crate) fn expect_log(&self, needle: &str) -> String {
        expect_in(&self.stderr, needle)
    }

    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit (bounded).
    pub(crate) fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit within {LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub(crate) fn stderr_text(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        cleanup::remove_pid(self.child.id());
    }
}

/// Waits for a line containing `needle` on `lines`.
pub(crate) fn expect_in(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => continue,
            Err(_) => panic!("no line containing {needle:?} within {LIMIT:?}"),
        }
    }
}

fn pipe_lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Runs a short-lived command to completion: (exit code, stdout, stderr).
pub(crate) fn run(args: &[&str]) -> (i32, String, String) {
    let mut p = Proc::start(args);
    let status = p.wait();
    // The pipes close with the process: what they said is complete once
    // their reader threads hang up (a fixed pause was not always enough
    // on a loaded machine, and a JSON answer came back empty).
    let all = |lines: &mpsc::Receiver<String>| {
        let deadline = Instant::now() + LIMIT;
        let mut text = Vec::new();
        while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            text.push(line);
        }
        text.join("\n")
    };
    (status.code().unwrap_or(-1), all(&p.lines), all(&p.stderr))
}

/// Runs a short-lived command with `env` added to its environment and
/// `stdin` as its input, to completion: (exit code, stdout as bytes,
/// stderr).
pub(crate) fn run_with(
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &[u8],
) -> (i32, Vec<u8>, String) {
    use std::io::Write;
    let mut child = spawn_piped(
        Command::new(BIN)
            .args(args)
            // The test's own environment does not leak in.
            .env_remove("LHCLUSTER_BROKER")
            .env_remove("LHCLUSTER_NOTIFY_PUBLISHERS")
            .env_remove("LHCLUSTER_NOTIFY_SUBSCRIBERS")
            .envs(env.iter().copied()),
        Stdio::piped(),
    );
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    // A command that does not read its input is not an error here.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let read_all = |mut stream: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stream.read_to_end(&mut bytes);
            bytes
        })
    };
    let out = read_all(Box::new(child.stdout.take().unwrap()));
    let err = read_all(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{args:?} did not exit within {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    cleanup::remove_pid(child.id());
    let _ = writer.join();
    let out = out.join().unwrap();
    let err = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    (status.code().unwrap_or(-1), out, err)
}

/// Holds the chaos scenarios to one at a time: each runs several daemons
/// with 100 ms heartbeats, and on a 2-core machine two of them side by side
/// can stall a daemon past its peers' liveness bound, which is not what any
/// scenario is about. Taken before a scenario's time limit starts.
#[allow(dead_code)] // used by the chaos and cluster targets
pub(crate) fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SCENARIOS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SCENARIOS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs the scenario `f` alone ([`one_at_a_time`]) under the time limit
/// `limit` ([`limited_for`]).
pub(crate) fn scenario(limit: Duration, f: impl FnOnce() + Send + 'static) {
    let _one_at_a_time = one_at_a_time();
    limited_for(limit, f)
}

/// A broker with fast heartbeats on fresh ports.
pub(crate) struct Cluster {
    pub(crate) front: String,
    pub(crate) back: String,
    pub(crate) broker: Proc,
}

pub(crate) fn broker(extra: &[&str]) -> Cluster {
    let (front, back) = (ep(free_port()), ep(free_port()));
    let broker = broker_on(&front, &back, extra);
    Cluster {
        front,
        back,
        broker,
    }
}

/// A broker with fast heartbeats on the given endpoints, once it is up.
pub(crate) fn broker_on(front: &str, back: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "broker",
        "--frontend",
        front,
        "--backend",
        back,
        "--heartbeat",
        "100ms",
    ];
    args.extend_from_slice(extra);
    let broker = Proc::start(&args);
    broker.expect_line("broker frontend=");
    broker
}

/// A client proxy with fast heartbeats in front of the broker at `front`,
/// on a fresh endpoint (returned), once it is up.
pub(crate) fn proxy(front: &str, extra: &[&str]) -> (Proc, String) {
    let bind = ep(free_port());
    let mut args = vec![
        "proxy",
        "--broker",
        front,
        "--bind",
        &bind,
        "--heartbeat",
        "100ms",
    ];
    args.extend_from_slice(extra);
    let proxy = Proc::start(&args);
    proxy.expect_line("proxy bind=");
    (proxy, bind)
}

pub(crate) fn worker(back: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["worker", "--broker", back, "--heartbeat", "100ms"];
    args.extend_from_slice(extra);
    let w = Proc::start(&args);
    w.expect_line("worker serving");
    w
}

/// An HTTP scrape of a `--metrics` endpoint: the whole answer, status
/// line included (it must be 200).
#[allow(dead_code)] // not every test binary scrapes
pub(crate) fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(LIMIT))
        .and_then(|()| stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n"))
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    assert!(body.contains(" 200 "), "{body}");
    body
}

/// The broker's statistics as `lhcluster stats --json` prints them, or
/// `None` if it did not answer.
pub(crate) fn stats(front: &str) -> Option<serde_json::Value> {
    let (code, out, _) = run(&["stats", "--broker", front, "--json"]);
    if code != 0 {
        return None;
    }
    Some(serde_json::from_str(&out).unwrap())
}

/// Waits until the broker's statistics satisfy `done` (polled: the
/// broker has no way to push them), and returns them.
pub(crate) fn wait_stats(
    front: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + LIMIT;
    let mut last = None;
    loop {
        if let Some(v) = stats(front) {
            if done(&v) {
                return v;
            }
            last = Some(v);
        }
        assert!(
            Instant::now() < deadline,
            "broker never reached: {what}; last stats: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the broker reports `n` workers.
pub(crate) fn wait_workers(front: &str, n: u64) {
    wait_stats(front, &format!("{n} workers"), |v| v["workers"] == n);
}

/// Runs `f` with the default time limit; see [`limited_for`].
pub(crate) fn limited(f: impl FnOnce() + Send + 'static) {
    limited_for(LIMIT * 2, f)
}

/// Runs `f` on its own thread and fails the test if it takes longer than
/// `limit`. A test that hangs never reaches its destructors, so what it
/// registered with [`cleanup`] (its processes, its network namespaces) is
/// removed here instead.
pub(crate) fn limited_for(limit: Duration, f: impl FnOnce() + Send + 'static) {
    let registry = Arc::new(Mutex::new(cleanup::Registry::default()));
    let (tx, rx) = mpsc::channel();
    let theirs = registry.clone();
    let t = std::thread::spawn(move || {
        cleanup::install(theirs);
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(limit) {
        Ok(()) => t.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = t.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            registry.lock().unwrap().run();
            panic!("test exceeded its time limit of {limit:?}")
        }
    }
}

/// What a test thread leaves to clean up if it hangs: the processes it
/// started and the commands that undo its other side effects. Each test
/// thread has its own registry (tests run in parallel in one process).
pub(crate) mod cleanup {
    use super::*;

    #[derive(Debug, Default)]
    pub(crate) struct Registry {
        pids: Vec<u32>,
        commands: Vec<Vec<String>>,
    }

    impl Registry {
        /// Kills the processes first: a network namespace goes away only
        /// once nothing runs in it.
        pub(crate) fn run(&mut self) {
            for pid in self.pids.drain(..) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            for command in self.commands.drain(..) {
                let _ = Command::new(&command[0])
                    .args(&command[1..])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }

    thread_local! {
        static CURRENT: RefCell<Option<Arc<Mutex<Registry>>>> = const { RefCell::new(None) };
    }

    pub(super) fn install(registry: Arc<Mutex<Registry>>) {
        CURRENT.with(|c| *c.borrow_mut() = Some(registry));
    }

    fn with(f: impl FnOnce(&mut Registry)) {
        CURRENT.with(|c| {
            if let Some(r) = &*c.borrow() {
                f(&mut r.lock().unwrap_or_else(|p| p.into_inner()));
            }
        });
    }

    pub(super) fn add_pid(pid: u32) {
        with(|r| r.pids.push(pid));
    }

    pub(super) fn remove_pid(pid: u32) {
        with(|r| r.pids.retain(|&p| p != pid));
    }

    /// Registers a command to run if the test hangs.
    pub(crate) fn add_command(command: &[&str]) {
        with(|r| {
            r.commands
                .push(command.iter().map(|s| s.to_string()).collect())
        });
    }

    /// Forgets a command registered with [`add_command`] (its owner ran it).
    pub(crate) fn remove_command(command: &[&str]) {
        with(|r| r.commands.retain(|c| c != command));
    }
}

/// A fresh directory under the system's temp dir, removed on drop (also
/// when the test fails).
pub(crate) struct TempDir(std::path::PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "lhc-test-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub(crate) fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
