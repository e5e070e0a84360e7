//! Resident memory of a process, from `/proc/<pid>/status`.

/// The process's resident set size in bytes (`VmRSS`), or `None` if it has
/// exited (or this is not Linux).
pub(crate) fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `bytes` in MiB, for the figures a test prints.
pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Samples of one process's RSS over a run.
#[derive(Debug)]
pub(crate) struct RssTrack {
    pub(crate) name: String,
    pid: u32,
    pub(crate) samples: Vec<u64>,
}

impl RssTrack {
    pub(crate) fn new(name: &str, pid: u32) -> Self {
        Self {
            name: name.to_owned(),
            pid,
            samples: Vec::new(),
        }
    }

    /// Takes a sample; panics if the process has gone (a daemon that died
    /// under test is a failure in itself).
    pub(crate) fn sample(&mut self) -> u64 {
        let now = rss(self.pid).unwrap_or_else(|| panic!("{} has exited", self.name));
        self.samples.push(now);
        now
    }

    /// One line of figures: first, min, max, last sample in MiB.
    pub(crate) fn summary(&self) -> String {
        let (first, last) = (self.samples[0], *self.samples.last().unwrap());
        let (min, max) = (
            *self.samples.iter().min().unwrap(),
            *self.samples.iter().max().unwrap(),
        );
        format!(
            "{}: RSS first {:.1} MiB, min {:.1}, max {:.1}, last {:.1} ({} samples)",
            self.name,
            mib(first),
            mib(min),
            mib(max),
            mib(last),
            self.samples.len()
        )
    }
}
