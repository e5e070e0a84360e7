//! Process figures from `/proc` (Linux): CPU time per thread, resident
//! memory and its peak. Elsewhere every figure reads as zero.

use std::collections::BTreeMap;
use std::fs;

/// CPU time of every live thread of this process, in ns, by thread id, with
/// the thread's name (`/proc/self/task/*/schedstat`, `comm`).
#[derive(Debug, Default)]
pub struct CpuSnapshot {
    threads: BTreeMap<u64, (String, u64)>,
    /// Context switches (voluntary and not) of the live threads, by id.
    switches: BTreeMap<u64, u64>,
}

impl CpuSnapshot {
    pub fn take() -> Self {
        let mut threads = BTreeMap::new();
        let mut switches = BTreeMap::new();
        let Ok(dir) = fs::read_dir("/proc/self/task") else {
            return Self { threads, switches };
        };
        for entry in dir.flatten() {
            let Some(tid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let path = entry.path();
            // First field: time spent on the CPU, in ns.
            let Some(ns) = fs::read_to_string(path.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            else {
                continue;
            };
            let name = fs::read_to_string(path.join("comm"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            threads.insert(tid, (name, ns));
            let status = fs::read_to_string(path.join("status")).unwrap_or_default();
            let count: u64 = status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            switches.insert(tid, count);
        }
        Self { threads, switches }
    }

    /// CPU time spent since `earlier`, in ns, by thread group (thread names
    /// without their numeric suffix: `lhcluster-handler-3` counts as
    /// `lhcluster-handler`). Threads that ended in between are not counted:
    /// take both snapshots while the measured threads run.
    pub fn since(&self, earlier: &CpuSnapshot) -> BTreeMap<String, u64> {
        let mut groups = BTreeMap::new();
        for (tid, (_, ns)) in &self.threads {
            let before = earlier.threads.get(tid).map_or(0, |(_, ns)| *ns);
            *groups.entry(self.group(*tid)).or_insert(0) += ns.saturating_sub(before);
        }
        groups
    }

    /// Context switches since `earlier`, by thread group.
    pub fn switches_since(&self, earlier: &CpuSnapshot) -> BTreeMap<String, u64> {
        let mut groups = BTreeMap::new();
        for (tid, n) in &self.switches {
            let before = earlier.switches.get(tid).copied().unwrap_or(0);
            *groups.entry(self.group(*tid)).or_insert(0) += n.saturating_sub(before);
        }
        groups
    }

    fn group(&self, tid: u64) -> String {
        let pid = u64::from(std::process::id());
        let process = self.threads.get(&pid).map(|(name, _)| name.as_str());
        let name = self.threads.get(&tid).map_or("", |(name, _)| name.as_str());
        if tid == pid {
            "main".to_owned()
        } else if Some(name) == process {
            // Threads that never named themselves: libzmq's I/O and reaper.
            "zmq-io".to_owned()
        } else {
            group_name(name)
        }
    }
}

/// A short name for a thread group: numeric suffixes dropped, and the
/// library's role threads (whose names the kernel cuts at 15 bytes) named
/// after their role.
fn group_name(name: &str) -> String {
    const ROLES: [(&str, &str); 7] = [
        ("lhcluster-broke", "broker"),
        ("lhcluster-clien", "client-driver"),
        ("lhcluster-worke", "worker-driver"),
        ("lhcluster-handl", "handlers"),
        ("lhcluster-proxy", "proxy"),
        ("ZMQbg/IO", "zmq-io"),
        ("ZMQbg/Reaper", "zmq-io"),
    ];
    if let Some((_, role)) = ROLES.iter().find(|(prefix, _)| name.starts_with(prefix)) {
        return (*role).to_owned();
    }
    let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let trimmed = trimmed.trim_end_matches(['-', '/']);
    if trimmed.is_empty() {
        name.to_owned()
    } else {
        trimmed.to_owned()
    }
}

fn status_kb(field: &str) -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Resident memory now, in KiB (`VmRSS`).
pub fn rss_kb() -> u64 {
    status_kb("VmRSS:")
}

/// Peak resident memory since the last [`reset_peak_rss`], in KiB (`VmHWM`).
pub fn peak_rss_kb() -> u64 {
    status_kb("VmHWM:")
}

/// Resets the peak (`VmHWM`) to the current RSS, so each phase reports its
/// own peak (Linux ≥ 4.0: `echo 5 > /proc/self/clear_refs`).
pub fn reset_peak_rss() {
    let _ = fs::write("/proc/self/clear_refs", "5");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_groups_drop_numeric_suffixes() {
        assert_eq!(group_name("lhcluster-handl"), "handlers");
        assert_eq!(group_name("ZMQbg/IO/0"), "zmq-io");
        assert_eq!(group_name("bench-client-0"), "bench-client");
        assert_eq!(group_name("lhcluster-broke"), "broker");
        assert_eq!(group_name("123"), "123");
    }
}
