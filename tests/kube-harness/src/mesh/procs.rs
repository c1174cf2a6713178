//! The mesh's processes, each the leader of a process group of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::{Error, io, tail};

/// One process a test started, the leader of a process group of its own.
#[derive(Debug)]
struct Member {
    name: String,
    child: Child,
    log: PathBuf,
}

/// The processes of the mesh (istiod, services, sidecars); dropping it kills each one's
/// whole process group, last started first: pilot-agent's Envoy is its child, and
/// pilot-agent does not take it along when killed.
#[derive(Debug, Default)]
pub struct Procs {
    members: Vec<Member>,
    /// The cluster's watchdog's list of process groups, when a cluster watches them.
    groups: Option<PathBuf>,
}

/// How to start one process.
#[derive(Debug)]
pub struct Spawn<'a> {
    /// Names it in errors and its log `<logs>/<name>.log`.
    pub name: &'a str,
    pub program: &'a Path,
    pub args: &'a [String],
    pub envs: &'a [(&'a str, String)],
    /// Its working directory (pilot-agent reads its token and root certificate relative
    /// to it).
    pub cwd: &'a Path,
    /// The network namespace to run it in (`ip netns exec`), or the host's.
    pub netns: Option<&'a str>,
}

impl Procs {
    /// Processes that `cluster`'s watchdog kills, each with its group, if the test process
    /// dies without dropping them.
    pub fn watched_by(cluster: &crate::Cluster) -> Procs {
        Procs {
            members: Vec::new(),
            groups: Some(cluster.dir().join("groups")),
        }
    }

    /// Starts a process, its output in `<logs>/<name>.log`; returns the log's path.
    pub fn spawn(&mut self, spec: &Spawn<'_>, logs: &Path) -> Result<PathBuf, Error> {
        use std::os::unix::process::CommandExt as _;
        let log = logs.join(format!("{}.log", spec.name));
        let out = std::fs::File::create(&log).map_err(io(format!("create {}", log.display())))?;
        let err = out.try_clone().map_err(io("dup log"))?;
        let mut command = match spec.netns {
            // `ip netns exec` execs the program: the child is the program itself.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(spec.program);
                c
            }
            None => Command::new(spec.program),
        };
        command
            .args(spec.args)
            .envs(spec.envs.iter().map(|(k, v)| (k, v)))
            .current_dir(spec.cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // A group of its own, so that Drop reaches its children too.
            .process_group(0);
        let child = command
            .spawn()
            .map_err(io(format!("start {}", spec.name)))?;
        if let Some(groups) = &self.groups {
            crate::append_line(groups, &child.id().to_string())?;
        }
        self.members.push(Member {
            name: spec.name.to_owned(),
            child,
            log: log.clone(),
        });
        Ok(log)
    }

    /// Each process's name and id, which is also its process group's (its children's:
    /// pilot-agent's Envoy).
    pub fn groups(&self) -> Vec<(String, u32)> {
        self.members
            .iter()
            .map(|m| (m.name.clone(), m.child.id()))
            .collect()
    }

    /// An error naming the first process that has exited, with the end of its log.
    pub fn check(&mut self) -> Result<(), Error> {
        for m in &mut self.members {
            match m.child.try_wait() {
                Ok(None) => {}
                Ok(Some(status)) => {
                    return Err(Error::Failed(format!(
                        "{} exited ({status}); the end of its log:\n{}",
                        m.name,
                        tail(&m.log)
                    )));
                }
                Err(e) => return Err(io(format!("wait for {}", m.name))(e)),
            }
        }
        Ok(())
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        while let Some(mut m) = self.members.pop() {
            if let Ok(pid) = i32::try_from(m.child.id()) {
                // Gone already is fine; there is nothing else to do about a failure here.
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = m.child.kill();
            let _ = m.child.wait();
        }
    }
}
