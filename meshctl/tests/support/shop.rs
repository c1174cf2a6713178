//! A whole `meshctl up` as a real process on ports shifted by an offset, its output read
//! line by line, for the tests that stop it, signal it and kill its services.

// A synchronous black-box harness: blocking waits and wall-clock deadlines are what it needs.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    hash::{BuildHasher, Hasher, RandomState},
    io::{BufRead, BufReader, Read},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

pub const SERVICES: [&str; 7] = [
    "catalog",
    "inventory",
    "orders",
    "payments",
    "fulfillment",
    "notifications",
    "orchestrator",
];

/// How meshctl prefixes a service's lines: its name, padded to the longest.
pub fn line_prefix(name: &str) -> String {
    let width = SERVICES.iter().map(|s| s.len()).max().unwrap_or(0);
    format!("{name:width$} | ")
}

/// Every service's name and ports.
const INFOS: [meshmart::config::ServiceInfo; 7] = [
    catalog::SERVICE,
    inventory::SERVICE,
    orders::SERVICE,
    payments::SERVICE,
    fulfillment::SERVICE,
    notifications::SERVICE,
    orchestrator::SERVICE,
];

/// A line of meshctl's output, and whether it came on stderr.
pub type Line = (bool, String);

/// A running `meshctl up`, its output, and its children's pids.
pub struct Shop {
    pub meshctl: Child,
    lines: mpsc::Receiver<Line>,
    pub seen: Vec<Line>,
    /// As found in `/proc` once the shop was up.
    pub children: BTreeMap<&'static str, i32>,
    offset: u16,
    data: tempfile::TempDir,
}

impl Shop {
    /// Starts `meshctl up` on free ports, with `env` added, and waits until it says every
    /// service is SERVING.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let mut shop = Self::spawn(env);
        shop.wait_for_line("", "every service reports SERVING");
        shop.children = children_of(shop.pid());
        assert_eq!(
            shop.children.len(),
            SERVICES.len(),
            "children: {:?}",
            shop.children
        );
        // The pids meshctl prints are its children's.
        for (name, pid) in &shop.children {
            assert_eq!(shop.pid_of(name), *pid, "{}", shop.output());
        }
        shop
    }

    /// Starts `meshctl up` as [`Shop::start`] does, without waiting for anything.
    pub fn spawn(env: &[(&str, &str)]) -> Self {
        let offset = free_offset();
        let data = tempfile::tempdir().unwrap();
        let mut meshctl = Command::new(env!("CARGO_BIN_EXE_meshctl"))
            .args(["up", "--port-offset", &offset.to_string(), "--data-dir"])
            .arg(data.path())
            .env("LOG_FORMAT", "json")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        read_lines(meshctl.stdout.take().unwrap(), false, tx.clone());
        read_lines(meshctl.stderr.take().unwrap(), true, tx);
        Self {
            meshctl,
            lines,
            seen: Vec::new(),
            children: BTreeMap::new(),
            offset,
            data,
        }
    }

    /// `service`'s gRPC address, `127.0.0.1:<port>`: the same however often it restarts.
    pub fn grpc_addr(&self, service: &str) -> String {
        let port = INFOS
            .iter()
            .find(|info| info.name == service)
            .unwrap_or_else(|| panic!("no service {service:?}"))
            .grpc_port;
        format!("127.0.0.1:{}", port + self.offset)
    }

    /// `text` with each service's default gRPC address (`127.0.0.1:50051` to
    /// `127.0.0.1:50057`) replaced by this shop's. The offset is at least 1000, so no
    /// address replaced is another service's default.
    pub fn at_shop_addrs(&self, text: &str) -> String {
        INFOS.iter().fold(text.to_owned(), |text, info| {
            text.replace(
                &format!("127.0.0.1:{}", info.grpc_port),
                &self.grpc_addr(info.name),
            )
        })
    }

    /// The shop's `--data-dir`, a temporary folder.
    pub fn data_dir(&self) -> &std::path::Path {
        self.data.path()
    }

    /// The pid of `service`'s latest process, from meshctl's `started <service> pid=<n>`
    /// lines seen so far.
    pub fn pid_of(&self, service: &str) -> i32 {
        self.started_pids(service)
            .last()
            .copied()
            .unwrap_or_else(|| panic!("no pid for {service}:\n{}", self.output()))
    }

    /// Waits until meshctl says it started `service` again, in a process other than `old`;
    /// returns its pid.
    pub fn wait_for_restart(&mut self, service: &str, old: i32) -> i32 {
        let start = format!("meshctl: started {service} pid=");
        self.wait_for(&format!("restart of {service} (was pid {old})"), |line| {
            line.strip_prefix(&start)
                .is_some_and(|pid| pid.parse::<i32>().is_ok_and(|pid| pid != old))
        });
        self.pid_of(service)
    }

    fn started_pids(&self, service: &str) -> Vec<i32> {
        let start = format!("meshctl: started {service} pid=");
        self.seen
            .iter()
            .filter_map(|(_, line)| line.strip_prefix(&start)?.parse().ok())
            .collect()
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.meshctl.id()).unwrap()
    }

    pub fn signal(&self, signal: Signal) {
        nix::sys::signal::kill(Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// Signals `service`'s latest process.
    pub fn signal_child(&self, service: &str, signal: Signal) {
        nix::sys::signal::kill(Pid::from_raw(self.pid_of(service)), signal).unwrap();
    }

    /// Waits for a line that starts with `start` and contains `needle`, unless one came
    /// already.
    pub fn wait_for_line(&mut self, start: &str, needle: &str) {
        self.wait_for(
            &format!("a line starting {start:?} containing {needle:?}"),
            |line| line.starts_with(start) && line.contains(needle),
        );
    }

    /// Waits at most 60 s for a line that `matches` (`what`, for the failure), unless one
    /// came already; returns it.
    pub fn wait_for(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        if let Some((_, line)) = self.seen.iter().find(|(_, line)| matches(line)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let found = matches(&line.1).then(|| line.1.clone());
                    self.seen.push(line);
                    if let Some(found) = found {
                        return found;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("no {what}; output so far:\n{}", self.output());
    }

    /// Waits at most `within` for meshctl to exit, then for the rest of its output.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.meshctl.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "meshctl did not exit within {within:?}; output so far:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // Its pipes close when it exits; what it wrote before is all there.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        status
    }

    /// Where `name`'s last line is in [`Shop::stdout`], after checking that it is the
    /// runtime's last words.
    pub fn last_line_of(&self, name: &str) -> usize {
        let stdout = self.stdout();
        // Every line of a service is prefixed with its name, padded to the longest.
        let prefix = line_prefix(name);
        let last = stdout
            .iter()
            .rposition(|line| line.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no line from {name}:\n{}", self.output()));
        // As JSON (LOG_FORMAT=json).
        assert!(
            stdout[last].contains(r#""message":"stopped""#),
            "{name}'s last line is not its final log line {:?}:\n{}",
            stdout[last],
            self.output()
        );
        last
    }

    pub fn output(&self) -> String {
        let lines: Vec<&str> = self.seen.iter().map(|(_, line)| line.as_str()).collect();
        lines.join("\n")
    }

    /// Lines on stdout, in order.
    pub fn stdout(&self) -> Vec<&str> {
        self.seen
            .iter()
            .filter(|(stderr, _)| !stderr)
            .map(|(_, line)| line.as_str())
            .collect()
    }
}

impl Drop for Shop {
    /// A failed test leaves no process behind: meshctl and its children, by pid, restarted
    /// ones too.
    fn drop(&mut self) {
        let mut pids: Vec<i32> = self.children.values().copied().collect();
        pids.extend(children_of(self.pid()).into_values());
        pids.extend(SERVICES.iter().flat_map(|name| self.started_pids(name)));
        for pid in pids {
            if is_meshctl_serve(pid).is_some() {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        if let Ok(None) = self.meshctl.try_wait() {
            let _ = self.meshctl.kill();
            let _ = self.meshctl.wait();
        }
    }
}

/// A `--port-offset` whose four ports nothing listens on right now. The services' fixed
/// gRPC ports plus an offset land in the range the kernel hands out for outgoing
/// connections, so a fixed offset can find its port taken by another program's client
/// socket; an offset tried first cannot (save in the moment before meshctl binds). Drawn
/// at random, so that tests running side by side, here and in other checkouts, do not
/// pick the same one; even, so that no two share a port (one's inventory port, +1, is
/// never another's catalog port).
fn free_offset() -> u16 {
    let services = INFOS;
    for _ in 0..100 {
        // `RandomState` is seeded afresh each time: a random number without a dependency.
        let random = RandomState::new().build_hasher().finish();
        let offset = 1000 + 2 * u16::try_from(random % 4501).unwrap();
        let free = services
            .iter()
            .flat_map(|service| [service.grpc_port, service.metrics_port()])
            .all(|port| std::net::TcpListener::bind(("127.0.0.1", port + offset)).is_ok());
        if free {
            return offset;
        }
    }
    panic!("no free port offset found");
}

fn read_lines(stream: impl Read + Send + 'static, stderr: bool, tx: mpsc::Sender<Line>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send((stderr, line)).is_err() {
                break;
            }
        }
    });
}

/// The services running as children of `parent`, by name, from `/proc`.
pub fn children_of(parent: i32) -> BTreeMap<&'static str, i32> {
    let mut children = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().map_while(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces, so split after its `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<i32>().ok());
        if ppid == Some(parent)
            && let Some(service) = is_meshctl_serve(pid)
        {
            children.insert(service, pid);
        }
    }
    children
}

/// The service `pid` runs, if it is a `meshctl serve <service>`.
pub fn is_meshctl_serve(pid: i32) -> Option<&'static str> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_meshctl = args.first()?.ends_with(b"meshctl") && args.get(1)? == b"serve";
    SERVICES
        .into_iter()
        .find(|name| is_meshctl && args.get(2) == Some(&name.as_bytes()))
}

/// Exited, not yet reaped by its parent.
pub fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            Some(rest.split_whitespace().next()? == "Z")
        })
        .unwrap_or(false)
}

pub fn gone(pid: i32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}
