//! Three "hosts" on one switch: a network namespace per host, each wired
//! by a veth pair to a bridge that lives in a fourth namespace (the
//! switch), and the test process's own namespace wired to the same bridge.
//! So every host reaches every other, and the test process reaches them
//! all, on one private /28; taking a host's port of the switch down cuts
//! that host off from everything (up heals it).
//!
//! The bridge is in a namespace of its own, not in the test's: a bridge in
//! the host's namespace would hand the hosts' traffic to the host's
//! firewall (`br_netfilter`), whose rules (a container runtime's, say) are
//! not ours. Traffic between the test process and a host only enters and
//! leaves the test's namespace, as on any link.
//!
//! As for [`Netns`](super::Netns): everything is removed when the guard
//! drops, also when the test fails; if the test hangs, its time limit runs
//! the same commands (`support::cleanup`); names carry the test process's
//! id, and what a run killed outright left behind is swept first.

use std::process::Command;

use super::{ip, is_root, sweep};
use crate::support::cleanup;

const PREFIX: &str = "lhc-hosts-";

/// The namespaces, the switch and the addresses. Drop it after the
/// processes that run in it: a namespace goes only once nothing runs in it.
#[derive(Debug)]
pub(crate) struct Hosts {
    /// The switch's namespace.
    switch: String,
    /// Each host's namespace.
    names: Vec<String>,
    /// The test's end of its link to the switch.
    own_if: String,
    /// Each host's address, reachable from the test process and from the
    /// other hosts.
    pub(crate) addrs: Vec<String>,
}

/// The namespace names of process `pid`: the switch's, then host `i`'s.
fn switch_name(pid: u32) -> String {
    format!("{PREFIX}{pid}-sw")
}

fn host_name(pid: u32, i: usize) -> String {
    format!("{PREFIX}{pid}-h{i}")
}

/// The test's end of the link to the switch (at most 15 bytes).
fn own_if(pid: u32) -> String {
    format!("lhc{pid}s")
}

/// The switch's port towards host `i`.
fn port(i: usize) -> String {
    format!("p{i}")
}

impl Hosts {
    /// Makes `count` hosts on a switch, or says why it cannot (not root, no
    /// `ip`): the caller skips its test with that reason. Failing to wire
    /// them once the namespaces can be made is a failure, not a reason to
    /// skip.
    pub(crate) fn create(count: usize) -> Result<Hosts, String> {
        assert!((1..=12).contains(&count), "a /28 holds 12 hosts");
        if !is_root() {
            return Err("not running as root".into());
        }
        ip(&["-V"]).map_err(|e| format!("no usable `ip` command ({e})"))?;
        sweep(PREFIX, own_if);
        let pid = std::process::id();
        // A /28 of 10.214.0.0/16 picked by the process id (the single
        // namespace of `Netns` uses 10.213.0.0/16): .1 is the test's, the
        // hosts are .2 onwards.
        let base = (pid % 4096) * 16;
        let addr = |n: u32| format!("10.214.{}.{}", base >> 8, (base & 0xFF) + n);
        let hosts = Hosts {
            switch: switch_name(pid),
            names: (0..count).map(|i| host_name(pid, i)).collect(),
            own_if: own_if(pid),
            addrs: (0..count as u32).map(|i| addr(i + 2)).collect(),
        };
        for command in hosts.delete_commands() {
            cleanup::add_command(&command.iter().map(String::as_str).collect::<Vec<_>>());
        }
        // On failure the guard, dropped by the panic, removes what was made.
        if let Err(e) = hosts.wire(&addr(1)) {
            panic!("cannot set up the hosts of {}: {e}", hosts.switch);
        }
        Ok(hosts)
    }

    fn wire(&self, own_addr: &str) -> Result<(), String> {
        let sw = self.switch.as_str();
        ip(&["netns", "add", sw])?;
        ip(&["-n", sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", sw, "link", "set", "br0", "up"])?;
        for (i, (name, addr)) in self.names.iter().zip(&self.addrs).enumerate() {
            let p = port(i);
            ip(&["netns", "add", name])?;
            ip(&[
                "-n", sw, "link", "add", &p, "type", "veth", "peer", "name", "eth0", "netns", name,
            ])?;
            ip(&["-n", sw, "link", "set", &p, "master", "br0"])?;
            ip(&["-n", sw, "link", "set", &p, "up"])?;
            ip(&[
                "-n",
                name,
                "addr",
                "add",
                &format!("{addr}/28"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", name, "link", "set", "eth0", "up"])?;
            ip(&["-n", name, "link", "set", "lo", "up"])?;
        }
        let own = self.own_if.as_str();
        ip(&[
            "link", "add", own, "type", "veth", "peer", "name", "up0", "netns", sw,
        ])?;
        ip(&["-n", sw, "link", "set", "up0", "master", "br0"])?;
        ip(&["-n", sw, "link", "set", "up0", "up"])?;
        ip(&["addr", "add", &format!("{own_addr}/28"), "dev", own])?;
        ip(&["link", "set", own, "up"])
    }

    /// `program args…` to be run on host `i`.
    pub(crate) fn command(&self, i: usize, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[i], program])
            .args(args);
        c
    }

    /// Cuts host `i` off: nothing passes between it and anyone else.
    pub(crate) fn cut(&self, i: usize) {
        ip(&["-n", &self.switch, "link", "set", &port(i), "down"]).unwrap();
    }

    /// Plugs host `i` back in.
    pub(crate) fn heal(&self, i: usize) {
        ip(&["-n", &self.switch, "link", "set", &port(i), "up"]).unwrap();
    }

    /// The commands that remove everything (each harmless if its object
    /// is already gone): the link first, then the namespaces, whose veth
    /// pairs go with them.
    fn delete_commands(&self) -> Vec<Vec<String>> {
        let mut commands = vec![vec![
            "ip".to_owned(),
            "link".into(),
            "del".into(),
            self.own_if.clone(),
        ]];
        for name in self.names.iter().chain([&self.switch]) {
            commands.push(vec![
                "ip".into(),
                "netns".into(),
                "del".into(),
                name.clone(),
            ]);
        }
        commands
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for command in self.delete_commands() {
            let args: Vec<&str> = command.iter().map(String::as_str).collect();
            let _ = ip(&args[1..]);
            cleanup::remove_command(&args);
        }
    }
}
