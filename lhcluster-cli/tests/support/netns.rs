//! A network namespace joined to the host by a veth pair on a private /30:
//! a process started in it reaches the host at [`Netns::host_addr`], and
//! taking the host's end of the link down partitions it (up heals it).
//!
//! Everything is removed when the guard drops, also when the test fails
//! or panics; if the test hangs, its time limit runs the same commands
//! (`support::cleanup`). Names carry the test process's id, so parallel
//! runs do not collide, and namespaces whose creator is gone (a run killed
//! outright) are swept before a new one is made.

use std::process::{Command, Stdio};

use super::cleanup;

/// Several namespaces ("hosts") on one switch, for the cluster tests.
pub(crate) mod hosts;

const PREFIX: &str = "lhc-chaos-";

#[derive(Debug)]
pub(crate) struct Netns {
    pub(crate) name: String,
    host_if: String,
    /// The host's address on the link (reachable from inside).
    pub(crate) host_addr: String,
}

/// Runs `ip` with `args`; its error text if it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    // "Uid: real effective saved fs": the effective id decides.
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0")
}

/// The host's end of the veth pair of the namespace made by process `pid`.
fn host_if(pid: u32) -> String {
    format!("lhc{pid}h")
}

/// Removes the namespaces (and links) of earlier runs whose process is gone.
fn sweep_stale() {
    sweep(PREFIX, host_if);
}

/// Removes the namespaces named `<prefix><pid>` or `<prefix><pid>-…` of
/// processes that are gone, and the link `link(pid)` of each.
fn sweep(prefix: &str, link: fn(u32) -> String) {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["link", "del", &link(pid)]);
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl Netns {
    /// Makes the namespace and its link, or says why it cannot (not root,
    /// no `ip`, namespaces not permitted): the caller skips its test with
    /// that reason. Failing to set up the link once the namespace exists
    /// is a failure, not a reason to skip.
    pub(crate) fn create() -> Result<Netns, String> {
        if !is_root() {
            return Err("not running as root".into());
        }
        ip(&["-V"]).map_err(|e| format!("no usable `ip` command ({e})"))?;
        sweep_stale();
        let pid = std::process::id();
        let name = format!("{PREFIX}{pid}");
        let (host, inner) = (host_if(pid), format!("lhc{pid}n"));
        // A /30 of 10.213.0.0/16 picked by the process id.
        let base = (pid % 16_384) * 4;
        let net = format!("10.213.{}.{}", base >> 8, base & 0xFF);
        let host_addr = format!("10.213.{}.{}", base >> 8, (base & 0xFF) + 1);
        let inner_addr = format!("10.213.{}.{}", base >> 8, (base & 0xFF) + 2);
        ip(&["netns", "add", &name])?;
        let ns = Netns {
            name,
            host_if: host,
            host_addr,
        };
        cleanup::add_command(&ns.delete_link());
        cleanup::add_command(&ns.delete_netns());
        let made = (|| {
            ip(&[
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &inner,
            ])?;
            ip(&["link", "set", &inner, "netns", &ns.name])?;
            ip(&[
                "addr",
                "add",
                &format!("{}/30", ns.host_addr),
                "dev",
                &ns.host_if,
            ])?;
            ip(&["link", "set", &ns.host_if, "up"])?;
            let exec = ["netns", "exec", &ns.name, "ip"];
            let inside = |args: &[&str]| ip(&[&exec[..], args].concat());
            inside(&["addr", "add", &format!("{inner_addr}/30"), "dev", &inner])?;
            inside(&["link", "set", &inner, "up"])?;
            inside(&["link", "set", "lo", "up"])
        })();
        // On failure the guard, dropped by the panic, removes what was made.
        if let Err(e) = made {
            panic!("cannot set up the link {net}/30 of {}: {e}", ns.name);
        }
        Ok(ns)
    }

    /// `program args…` to be run inside the namespace.
    pub(crate) fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]).args(args);
        c
    }

    /// Cuts the link: nothing passes either way.
    pub(crate) fn partition(&self) {
        ip(&["link", "set", &self.host_if, "down"]).unwrap();
    }

    /// Restores the link.
    pub(crate) fn heal(&self) {
        ip(&["link", "set", &self.host_if, "up"]).unwrap();
    }

    fn delete_link(&self) -> [&str; 4] {
        ["ip", "link", "del", &self.host_if]
    }

    fn delete_netns(&self) -> [&str; 4] {
        ["ip", "netns", "del", &self.name]
    }
}

impl Drop for Netns {
    /// Deleting the host's end removes the pair; the namespace goes once
    /// the processes in it have exited (the caller drops them first).
    fn drop(&mut self) {
        for command in [self.delete_link(), self.delete_netns()] {
            let _ = ip(&command[1..]);
            cleanup::remove_command(&command);
        }
    }
}
