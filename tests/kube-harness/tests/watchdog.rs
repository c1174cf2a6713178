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

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use kube_harness::mesh::{Net, Procs, Spawn, is_root};
use kube_harness::{Cluster, Error};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
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

/// Runs this test binary again as a child with only the test `test` and MESHMART_WATCHDOG_CHILD
/// set, and reads its stdout up to its `dir` line: the child and its lines by their first
/// word (`pids`, `mesh`, `dir`). `None` for the lines when the child said `no-tools` (it
/// said why, loudly; with MESHMART_REQUIRE_KUBE that is its error): the child has then
/// been reaped, and has passed.
#[allow(
    clippy::expect_used,
    reason = "the tests' helper: its failure is the test's"
)]
async fn abandoned_child(test: &str) -> (Child, Option<BTreeMap<String, String>>) {
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args(["--exact", test, "--nocapture"])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("run the child test");
    let stdout = child.stdout.take().expect("its stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut said = BTreeMap::new();
    let read = async {
        while let Some(line) = lines
            .next_line()
            .await
            .expect("a line of the child's output")
        {
            if line == "no-tools" {
                return false;
            }
            if let Some((word, rest)) = line.split_once(' ') {
                said.insert(word.to_owned(), rest.to_owned());
                if word == "dir" {
                    break;
                }
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
        return (child, None);
    }
    (child, Some(said))
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
    let (mut child, said) = abandoned_child("a_cluster_to_abandon").await;
    let Some(said) = said else { return };
    let pids: Vec<String> = said
        .get("pids")
        .map(|p| p.split(' ').map(str::to_owned).collect())
        .unwrap_or_default();
    let dir = said.get("dir").cloned().unwrap_or_default();
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
    let (mut child, said) = abandoned_child("a_mesh_to_abandon").await;
    let Some(said) = said else { return };
    let mesh: Vec<String> = said
        .get("mesh")
        .map(|m| m.split(' ').map(str::to_owned).collect())
        .unwrap_or_default();
    let dir = said.get("dir").cloned().unwrap_or_default();
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
