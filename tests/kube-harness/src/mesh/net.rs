//! The harness's network: a bridge with [`HOST_IP`] on the host end, and a network
//! namespace per workload with a veth to it (see the module's docs).

use std::path::Path;
use std::process::{Command, Stdio};

use super::{HOST_IP, PREFIX};
use crate::{Error, io, write};

/// `ip args...`, an error with its words if it fails.
fn ip(args: &[&str]) -> Result<(), Error> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("ip {}", args.join(" "))))?;
    if !out.status.success() {
        return Err(Error::Failed(format!(
            "ip {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The test's bridge and its workloads' network namespaces; see the module's docs.
#[derive(Debug)]
pub struct Net {
    /// `mm<pid>`: names the bridge and the veth ends (15 characters at most, IFNAMSIZ).
    tag: String,
    bridge: String,
    namespaces: Vec<String>,
    /// Where the watchdog's cleanup list is ([`crate::Cluster::on_abandon`]).
    cluster_dir: std::path::PathBuf,
}

/// One workload's network namespace.
#[derive(Debug, Clone)]
pub struct Netns {
    /// The namespace's name, for `ip netns exec`.
    pub name: String,
    /// The workload's address on the bridge.
    pub ip: String,
}

impl Net {
    /// The bridge, with [`HOST_IP`]/24 on the host end. An error if the range is already on
    /// the machine (another mesh test is running: one at a time). What it makes, `cluster`'s
    /// watchdog removes if the test process dies without dropping it.
    pub fn new(cluster: &crate::Cluster) -> Result<Net, Error> {
        let tag = format!("mm{}", std::process::id());
        let bridge = format!("{tag}br");
        let taken = Command::new("ip")
            .args(["-4", "-o", "addr", "show"])
            .output()
            .map_err(io("ip addr show"))?;
        if String::from_utf8_lossy(&taken.stdout).contains(&format!(" {HOST_IP}/")) {
            return Err(Error::Failed(format!(
                "{HOST_IP} is already on this machine (another mesh test running?)"
            )));
        }
        cluster.on_abandon(&format!("ip link del {bridge}"))?;
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        // From here on, Drop removes the bridge whatever fails next.
        let net = Net {
            tag,
            bridge,
            namespaces: Vec::new(),
            cluster_dir: cluster.dir().to_path_buf(),
        };
        ip(&["addr", "add", &format!("{HOST_IP}/24"), "dev", &net.bridge])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        Ok(net)
    }

    /// The bridge's name (`mm<pid>br`).
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// A network namespace `meshmart-<pid>-<name>` with a veth to the bridge and the
    /// address `10.233.0.<octet>`, and `hosts` as its /etc/hosts (`ip netns exec`
    /// bind-mounts /etc/netns/<name>/hosts over /etc/hosts).
    pub fn add(&mut self, name: &str, octet: u8, hosts: &str) -> Result<Netns, Error> {
        let ns = format!("meshmart-{}-{name}", std::process::id());
        let host_end = format!("{}h{octet}", self.tag);
        let ns_end = format!("{}w{octet}", self.tag);
        let addr = format!("{PREFIX}.{octet}");
        crate::append_line(
            &self.cluster_dir.join("cleanup"),
            &format!("ip netns del {ns}; rm -rf /etc/netns/{ns}"),
        )?;
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        let etc = Path::new("/etc/netns").join(&ns);
        std::fs::create_dir_all(&etc).map_err(io(format!("create {}", etc.display())))?;
        write(&etc.join("hosts"), hosts)?;
        ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", &ns_end,
        ])?;
        ip(&["link", "set", &ns_end, "netns", &ns])?;
        ip(&["link", "set", &host_end, "master", &self.bridge])?;
        ip(&["link", "set", &host_end, "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            &ns_end,
        ])?;
        ip(&["-n", &ns, "link", "set", &ns_end, "up"])?;
        // The sidecar and the service talk over the namespace's own loopback.
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        // The egress listeners' address (127.0.0.1 is the workload's own): the whole of
        // 127/8 routes to `lo`, but Envoy binds only an address that is on it.
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{EGRESS_IP}/8"),
            "dev",
            "lo",
        ])?;
        Ok(Netns { name: ns, ip: addr })
    }
}

/// Where each workload's sidecar listens for its outbound calls (the Sidecar resources'
/// egress `bind`), one listener per port of the mesh's Services; every Service's name
/// resolves to it in the namespace's /etc/hosts. Not 127.0.0.1, where the workload's own
/// program listens on its own port behind the inbound listener.
pub const EGRESS_IP: &str = "127.0.0.2";

impl Netns {
    /// Runs `task` on a thread of its own that has entered this namespace (setns), on a
    /// current-thread runtime: the sockets it opens are the namespace's, so a test can call
    /// through a sidecar's outbound listener with an in-process gRPC client.
    pub async fn run<F, Fut, T>(&self, task: F) -> Result<T, Error>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T>,
        T: Send + 'static,
    {
        let path = Path::new("/run/netns").join(&self.name);
        let (done, result) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("in-{}", self.name))
            .spawn(move || {
                let outcome = (|| {
                    let file = std::fs::File::open(&path)
                        .map_err(io(format!("open {}", path.display())))?;
                    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(|e| Error::Failed(format!("setns {}: {e}", path.display())))?;
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(io("a runtime in the namespace"))?;
                    Ok(runtime.block_on(task()))
                })();
                // The caller may have gone (its test failed); nothing to tell then.
                let _ = done.send(outcome);
            })
            .map_err(io("a thread for the namespace"))?;
        result
            .await
            .map_err(|_| Error::Failed(format!("the thread in {} ended early", self.name)))?
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and with it the host end.
        for ns in self.namespaces.drain(..) {
            let _ = ip(&["netns", "del", &ns]);
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&ns));
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
