//! A lab of network namespaces for the multi-host tests: one namespace per node, each with a
//! veth pair whose outer end sits on one private bridge (`10.77.0.0/24`: node `i` is
//! `10.77.0.<i+1>`; the bridge itself, in the test's own namespace, is [`BRIDGE_HOST`], so a
//! node in the test process can reach them). Links can be cut (the outer end down), shaped
//! (a qdisc on the outer end), and a group of nodes partitioned from the rest (their outer
//! ends moved to a second bridge, an island: they reach each other and nothing else, the
//! test's node included). Needs root and iproute2; everything is removed on drop.

use std::process::Command;

use super::child::{Child, ChildSpec};

/// The bridge's address in the test's namespace.
pub(crate) const BRIDGE_HOST: &str = "10.77.0.254";
/// The port every node binds (on the wildcard address of its own namespace).
pub(crate) const NODE_PORT: u16 = 7000;

/// Node `index`'s address on the bridge.
pub(crate) fn host_of(index: usize) -> String {
    format!("10.77.0.{}", index + 1)
}

/// Runs `ip` with `arguments`, panicking on failure.
pub(crate) fn ip(arguments: &[&str]) {
    let status = Command::new("ip").args(arguments).status().expect("run ip");
    assert!(status.success(), "ip {} failed", arguments.join(" "));
}

/// Whether the lab can run here: root and `ip`. Under CI (`CI` set) their absence is a
/// failure; elsewhere the test skips, saying why.
pub(crate) fn lab_available() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0\n"));
    let ip = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|output| output.status.success());
    if root && ip {
        return true;
    }
    let reason =
        format!("network-namespace tests need root (root: {root}) and iproute2's ip (found: {ip})");
    assert!(
        std::env::var_os("CI").is_none(),
        "{reason}; .ci/run installs iproute2 and runs as root"
    );
    println!("skipped: {reason}");
    false
}

/// The namespaces, their veth pairs on one bridge, and the node processes.
pub(crate) struct Lab {
    prefix: String,
    /// The namespace of each node.
    pub(crate) namespaces: Vec<String>,
    /// The running node process of each namespace.
    pub(crate) children: Vec<Option<Child>>,
}

impl Lab {
    /// `nodes` namespaces on a new bridge; `tag` keeps two labs of one process apart.
    pub(crate) fn new(nodes: usize, tag: &str) -> Lab {
        // Interface names are at most 15 bytes: "s" + tag + pid + suffix.
        let prefix = format!("s{tag}{}", std::process::id() % 100_000);
        let mut lab = Lab {
            prefix: prefix.clone(),
            namespaces: Vec::new(),
            children: Vec::new(),
        };
        let bridge = lab.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["addr", "add", &format!("{BRIDGE_HOST}/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        let island = lab.island();
        ip(&["link", "add", &island, "type", "bridge"]);
        ip(&["link", "set", &island, "up"]);
        for index in 0..nodes {
            let namespace = format!("{prefix}n{index}");
            ip(&["netns", "add", &namespace]);
            lab.namespaces.push(namespace.clone());
            lab.children.push(None);
            let (outer, inner) = (lab.outer(index), format!("{prefix}p{index}"));
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            ip(&["link", "set", &outer, "master", &bridge, "up"]);
            ip(&["link", "set", &inner, "netns", &namespace]);
            let inside = |arguments: &[&str]| {
                let mut all = vec!["netns", "exec", namespace.as_str(), "ip"];
                all.extend_from_slice(arguments);
                ip(&all);
            };
            inside(&["link", "set", "lo", "up"]);
            inside(&[
                "addr",
                "add",
                &format!("{}/24", host_of(index)),
                "dev",
                &inner,
            ]);
            inside(&["link", "set", &inner, "up"]);
        }
        lab
    }

    fn bridge(&self) -> String {
        format!("{}br", self.prefix)
    }

    /// The bridge of a partitioned group (no address: the test's node is not on it).
    fn island(&self) -> String {
        format!("{}is", self.prefix)
    }

    /// Partitions `group` from the other nodes and the test's node: their links move to
    /// the island bridge, where they reach only each other. Packets across are dropped
    /// silently (no reset), as in a real partition.
    pub(crate) fn partition(&self, group: &[usize]) {
        let island = self.island();
        for &index in group {
            ip(&["link", "set", &self.outer(index), "master", &island]);
        }
    }

    /// Ends a [`Lab::partition`] of `group`: their links return to the main bridge.
    pub(crate) fn heal(&self, group: &[usize]) {
        let bridge = self.bridge();
        for &index in group {
            ip(&["link", "set", &self.outer(index), "master", &bridge]);
        }
    }

    /// The outer (bridge-side) end of node `index`'s veth pair.
    pub(crate) fn outer(&self, index: usize) -> String {
        format!("{}v{index}", self.prefix)
    }

    /// What node `index`'s process runs as: bound to the wildcard address of its namespace,
    /// announcing its bridge address.
    pub(crate) fn spec(&self, index: usize) -> ChildSpec {
        ChildSpec {
            namespace: Some(self.namespaces[index].clone()),
            bind: format!("0.0.0.0:{NODE_PORT}"),
            announce: Some(host_of(index)),
            data_dir: None,
            persist: false,
        }
    }

    /// Node `index`'s running process.
    pub(crate) fn child(&mut self, index: usize) -> &mut Child {
        self.children[index].as_mut().expect("a live node")
    }

    /// Kills node `index`'s process (SIGKILL: no shutdown, as a crash).
    pub(crate) fn kill(&mut self, index: usize) {
        if let Some(child) = self.children[index].take() {
            child.kill();
        }
    }

    /// Cuts (`false`) or restores (`true`) node `index`'s link to the bridge.
    pub(crate) fn set_link(&self, index: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["link", "set", &self.outer(index), state]);
    }

    /// Replaces the root qdisc of node `index`'s outer link (`tc qdisc replace ... <qdisc>`);
    /// `false` when the kernel refuses it (a qdisc it was built without).
    pub(crate) fn shape(&self, index: usize, qdisc: &[&str]) -> bool {
        let outer = self.outer(index);
        let mut arguments = vec!["qdisc", "replace", "dev", outer.as_str(), "root"];
        arguments.extend_from_slice(qdisc);
        Command::new("tc")
            .args(&arguments)
            .output()
            .is_ok_and(|output| output.status.success())
    }

    /// Removes node `index`'s shaping.
    pub(crate) fn unshape(&self, index: usize) {
        let outer = self.outer(index);
        let _ = Command::new("tc")
            .args(["qdisc", "del", "dev", outer.as_str(), "root"])
            .output();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for index in 0..self.children.len() {
            self.kill(index);
        }
        for namespace in &self.namespaces {
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .status();
        }
        for bridge in [self.bridge(), self.island()] {
            let _ = Command::new("ip").args(["link", "del", &bridge]).status();
        }
    }
}
