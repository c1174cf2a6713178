//! `meshctl canary ...`: runs the `meshctl-canary` binary with the arguments as given.
//!
//! The canary commands talk to the Kubernetes API through kube, a large dependency that
//! `meshctl up` has no use for: so they are a binary of their own (the meshctl-canary
//! crate), and meshctl only finds it, next to itself first and then on PATH, and hands over.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The binary's name.
const BINARY: &str = "meshctl-canary";

/// The message for a missing binary: how to build or install it.
const NOT_FOUND: &str = "meshctl canary: the meshctl-canary binary is neither next to meshctl \
     nor on PATH; build it with `cargo build -p meshctl-canary` (it lands beside meshctl) or \
     install it with `cargo install --path meshctl-canary`";

/// Runs `meshctl-canary args...` and exits as it does.
pub(crate) fn run(args: &[OsString]) -> ExitCode {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let Some(binary) = find(exe_dir.as_deref(), std::env::var_os("PATH").as_deref()) else {
        eprintln!("{NOT_FOUND}");
        return ExitCode::from(2);
    };
    exec(&binary, args)
}

/// `meshctl-canary` in `exe_dir`, else the first on `path` (a PATH value).
fn find(exe_dir: Option<&Path>, path: Option<&OsStr>) -> Option<PathBuf> {
    let beside = exe_dir.map(|dir| dir.join(BINARY));
    let on_path = path
        .into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(BINARY));
    beside.into_iter().chain(on_path).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Replaces this process with the binary, so its exit code, signals and terminal are the
/// user's directly; returns only if that fails.
fn exec(binary: &Path, args: &[OsString]) -> ExitCode {
    use std::os::unix::process::CommandExt as _;
    let error = Command::new(binary).args(args).exec();
    eprintln!("meshctl canary: run {}: {error}", binary.display());
    ExitCode::from(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executable(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(BINARY);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn the_binary_beside_meshctl_comes_before_path() {
        let beside = tempfile::tempdir().unwrap();
        let on_path = tempfile::tempdir().unwrap();
        let want = executable(beside.path());
        executable(on_path.path());
        let path = std::env::join_paths([on_path.path()]).unwrap();
        assert_eq!(find(Some(beside.path()), Some(&path)), Some(want));
    }

    #[test]
    fn without_one_beside_meshctl_path_is_searched_in_order() {
        let beside = tempfile::tempdir().unwrap();
        let empty = tempfile::tempdir().unwrap();
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let want = executable(first.path());
        executable(second.path());
        // Not executable: skipped, as a shell would.
        std::fs::write(empty.path().join(BINARY), "").unwrap();
        let path = std::env::join_paths([empty.path(), first.path(), second.path()]).unwrap();
        assert_eq!(find(Some(beside.path()), Some(&path)), Some(want));
    }

    #[test]
    fn nowhere_is_none_and_the_message_says_how_to_build_it() {
        let beside = tempfile::tempdir().unwrap();
        assert_eq!(find(Some(beside.path()), None), None);
        assert!(
            NOT_FOUND.contains("cargo build -p meshctl-canary"),
            "{NOT_FOUND}"
        );
        assert!(
            NOT_FOUND.contains("cargo install --path meshctl-canary"),
            "{NOT_FOUND}"
        );
    }
}
