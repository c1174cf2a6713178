//! A test process killed with SIGKILL (no unwinding, no Drop) leaves no cluster behind: the
//! cluster's watchdog (src/lib.rs, WATCHDOG) sees the test process gone, kills etcd,
//! kube-apiserver and kube-controller-manager, and removes the cluster's directory.
//!
//! The test runs this same test binary again as a child, with only the test
//! `a_cluster_to_abandon` and MESHMART_WATCHDOG_CHILD set: the child starts a cluster,
//! prints its process ids and directory, and waits; the parent kills it with SIGKILL and then
//! waits, bounded, for every one of those processes to be gone and the directory removed.
//! The same for what the mesh makes beside a cluster: its process groups, a network
//! namespace and the bridge (as root).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use kube_harness::mesh::{Net, Procs, Spawn, is_root};
use kube_harness::{Cluster, Error};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::Instant;

const CHILD: &str = "MESHMART_WATCHDOG_CHILD";

/// Only in the child: a cluster, its pids and directory on stdout, then a wait for the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_to_abandon() -> Result<(), Error> {
    if std::env::var_os(CHILD).is_none() {
        return Ok(());
    }
    let Some(cluster) = Cluster::start("a_cluster_to_abandon", &[]).await? else {
        println!("no-tools");
        return Ok(());
    };
    let pids: Vec<String> = cluster.pids().iter().map(u32::to_string).collect();
    println!("pids {}", pids.join(" "));
    println!("dir {}", cluster.dir().display());
    // Bounded: the parent kills this process within seconds of reading the lines above.
    tokio::time::sleep(Duration::from_secs(120)).await;
    Ok(())
}

/// Only in the child (and only as root): a cluster, and what the mesh makes beside it (a
/// bridge, a network namespace, a process group with a child in that namespace); their
/// names on stdout, then a wait for the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_to_abandon() -> Result<(), Error> {
    if std::env::var_os(CHILD).is_none() {
        return Ok(());
    }
    let Some(cluster) = Cluster::start("a_mesh_to_abandon", &[]).await? else {
        println!("no-tools");
        return Ok(());
    };
    let mut procs = Procs::watched_by(&cluster);
    let mut net = Net::new(&cluster)?;
    let ns = net.add("abandoned", 2, "127.0.0.1 localhost\n")?;
    let args = ["-c".to_owned(), "sleep 120 & sleep 120".to_owned()];
    procs.spawn(
        &Spawn {
            name: "group",
            program: Path::new("/bin/sh"),
            args: &args,
            envs: &[],
            cwd: cluster.dir(),
            netns: Some(&ns.name),
        },
        cluster.dir(),
    )?;
    println!("mesh {} {}", ns.name, net.bridge());
    println!("dir {}", cluster.dir().display());
    tokio::time::sleep(Duration::from_secs(120)).await;
    Ok(())
}

/// Whether a process is gone (a zombie waiting for a reaper counts as gone: it runs nothing).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_test_process_leaves_no_cluster_behind() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args(["--exact", "a_cluster_to_abandon", "--nocapture"])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("run the child test");
    let stdout = child.stdout.take().expect("its stdout");
    let (mut pids, mut dir) = (Vec::new(), String::new());
    let mut lines = BufReader::new(stdout).lines();
    let read = async {
        while let Some(line) = lines
            .next_line()
            .await
            .expect("a line of the child's output")
        {
            if line == "no-tools" {
                return false; // the child said why, loudly; MESHMART_REQUIRE_KUBE made that its error
            }
            if let Some(rest) = line.strip_prefix("pids ") {
                pids = rest.split(' ').map(str::to_owned).collect();
            }
            if let Some(rest) = line.strip_prefix("dir ") {
                dir = rest.to_owned();
                break;
            }
        }
        true
    };
    let started = tokio::time::timeout(Duration::from_secs(180), read)
        .await
        .expect("the child starts its cluster within 180 s");
    if !started {
        let status = child.wait().await.expect("reap the child");
        assert!(status.success(), "the child test failed: {status}");
        return;
    }
    assert!(
        pids.len() >= 4 && !dir.is_empty(),
        "the child printed {pids:?} {dir:?}"
    );
    assert!(
        pids.iter().all(|p| !gone(p)),
        "the cluster runs before the kill"
    );

    child
        .kill()
        .await
        .expect("SIGKILL the child test process and reap it");

    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && (pids.iter().any(|p| !gone(p)) || Path::new(&dir).exists()) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left: Vec<&String> = pids.iter().filter(|p| !gone(p)).collect();
    assert!(
        left.is_empty(),
        "still running after the test process was killed: {left:?}"
    );
    assert!(!Path::new(&dir).exists(), "{dir} is still there");
}

/// The same for the mesh: the watchdog kills each process group the mesh started (not only
/// its leader) and removes the network namespace and the bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_mesh_test_leaves_no_namespace_bridge_or_process_behind() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    if !is_root() {
        assert!(
            !kube_harness::set("MESHMART_REQUIRE_MESH"),
            "MESHMART_REQUIRE_MESH is set but the mesh's watchdog test needs root"
        );
        eprintln!("SKIPPED: the mesh's watchdog test needs root (network namespaces)");
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args(["--exact", "a_mesh_to_abandon", "--nocapture"])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("run the child test");
    let stdout = child.stdout.take().expect("its stdout");
    let (mut mesh, mut dir) = (Vec::new(), String::new());
    let mut lines = BufReader::new(stdout).lines();
    let read = async {
        while let Some(line) = lines
            .next_line()
            .await
            .expect("a line of the child's output")
        {
            if line == "no-tools" {
                return false;
            }
            if let Some(rest) = line.strip_prefix("mesh ") {
                mesh = rest.split(' ').map(str::to_owned).collect();
            }
            if let Some(rest) = line.strip_prefix("dir ") {
                dir = rest.to_owned();
                break;
            }
        }
        true
    };
    let started = tokio::time::timeout(Duration::from_secs(180), read)
        .await
        .expect("the child starts its cluster within 180 s");
    if !started {
        let status = child.wait().await.expect("reap the child");
        assert!(status.success(), "the child test failed: {status}");
        return;
    }
    let [ns, bridge] = mesh.as_slice() else {
        panic!("the child printed {mesh:?}");
    };
    // The group's processes: the shell and its background sleep, found by namespace.
    let in_namespace = || -> Vec<String> {
        let out = std::process::Command::new("ip")
            .args(["netns", "pids", ns])
            .output()
            .expect("ip netns pids");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let exists = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    // The shell forks its background sleep as it starts: wait for both (bounded).
    let mut pids = in_namespace();
    for _ in 0..50 {
        if pids.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        pids = in_namespace();
    }
    assert!(
        pids.len() >= 2,
        "the group runs in {ns} before the kill: {pids:?}"
    );
    assert!(
        exists(&["link", "show", bridge]),
        "{bridge} is there before the kill"
    );

    child
        .kill()
        .await
        .expect("SIGKILL the child test process and reap it");

    let deadline = Instant::now() + Duration::from_secs(30);
    let namespace_there = || exists(&["netns", "pids", ns]);
    while Instant::now() < deadline
        && (pids.iter().any(|p| !gone(p))
            || namespace_there()
            || exists(&["link", "show", bridge])
            || Path::new(&dir).exists())
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left: Vec<&String> = pids.iter().filter(|p| !gone(p)).collect();
    assert!(left.is_empty(), "the group's processes still run: {left:?}");
    assert!(!namespace_there(), "{ns} is still there");
    assert!(
        !exists(&["link", "show", bridge]),
        "{bridge} is still there"
    );
    assert!(!Path::new(&dir).exists(), "{dir} is still there");
    assert!(
        !Path::new("/etc/netns").join(ns).exists(),
        "/etc/netns/{ns} is still there"
    );
}
