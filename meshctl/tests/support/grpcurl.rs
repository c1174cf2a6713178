//! The real grpcurl binary, run with `-plaintext` and a time limit, for the black-box tests
//! of `meshctl up`.

use std::{path::PathBuf, process::Command};

/// The grpcurl binary: `MESHMART_GRPCURL`, or the project's tool folder.
fn grpcurl_path() -> PathBuf {
    if let Some(path) = std::env::var_os("MESHMART_GRPCURL") {
        return PathBuf::from(path);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin/grpcurl");
    assert!(
        path.exists(),
        "grpcurl not found at {}: run scripts/install-tools.sh",
        path.display()
    );
    path
}

pub struct Grpcurl {
    path: PathBuf,
}

impl Grpcurl {
    /// Fails the test if there is no grpcurl.
    pub fn find() -> Self {
        Self {
            path: grpcurl_path(),
        }
    }

    /// Where the binary is, for a test that runs grpcurl through a shell.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Runs grpcurl; returns (success, stdout + stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String) {
        let output = Command::new(&self.path)
            .arg("-plaintext")
            .args(["-max-time", "20"])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (success, text) = self.run(args);
        assert!(success, "grpcurl {args:?} failed:\n{text}");
        text
    }

    pub fn call(&self, addr: &str, method: &str, body: &str) -> String {
        self.ok(&["-d", body, addr, method])
    }
}
