//! A recording exec worker's log: the `--exec` command that appends each
//! execution's request id (and attempt) to a file in a fresh temp
//! directory and echoes the payload, and the executions counted per id.
//! The directory goes when the log drops.

use std::collections::HashMap;
use std::path::PathBuf;

use lhcluster::RequestId;

#[derive(Debug)]
pub(crate) struct ExecLog {
    dir: PathBuf,
    path: String,
}

impl ExecLog {
    pub(crate) fn new(tag: &str) -> ExecLog {
        let dir = std::env::temp_dir().join(format!(
            "lhc-exec-{tag}-{}-{}",
            std::process::id(),
            super::free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("executions").to_str().unwrap().to_owned();
        ExecLog { dir, path }
    }

    /// The `--exec` command: records the execution, answers the payload.
    /// One short `echo >>` per execution: lines of concurrent workers do
    /// not interleave (appends of less than a pipe buffer are atomic).
    pub(crate) fn echo_command(&self) -> String {
        format!(
            "echo \"$LHCLUSTER_REQUEST_ID $LHCLUSTER_ATTEMPT\" >> {}; cat",
            self.path
        )
    }

    /// How many times each request id ran so far.
    pub(crate) fn counts(&self) -> HashMap<RequestId, u64> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let mut counts = HashMap::new();
        for line in text.lines() {
            let id = line.split_whitespace().next().unwrap().parse().unwrap();
            *counts.entry(id).or_insert(0) += 1;
        }
        counts
    }

    /// The attempt numbers of the executions of request `id`, in order.
    pub(crate) fn attempts(&self, id: RequestId) -> Vec<u32> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(i, _)| i.parse() == Ok(id))
            .map(|(_, attempt)| attempt.trim().parse().unwrap())
            .collect()
    }
}

impl Drop for ExecLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
