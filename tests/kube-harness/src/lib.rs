//! A throwaway Kubernetes control plane on loopback for the tests of the deployment files:
//! etcd, kube-apiserver and kube-controller-manager (namespaces, garbage collection, service
//! accounts and their tokens; no kubelet and no scheduler, so nothing runs), each a child
//! process of the test, in a temporary directory of its own.
//!
//! [`Cluster::start`] generates a CA, the API server's serving certificate, an admin client
//! certificate (`system:masters`) and the service-account signing key; starts etcd and the
//! API server on free loopback ports and waits (bounded) for `/readyz`; starts the
//! controller manager; installs the vendored Istio CRDs (`tests/deploy/schemas`) and waits
//! for them to be established; and writes a kubeconfig for kubectl, helm and istioctl
//! ([`Cluster::kubeconfig`]). Dropping the [`Cluster`] (also while a failed test unwinds)
//! kills every process and removes the directory. A test process killed outright (SIGKILL:
//! no unwinding, no Drop) leaves nothing either: each cluster has a watchdog process that
//! does the same once the test process is gone (tests/watchdog.rs).
//!
//! The binaries come from `<repo>/.tools/bin` (scripts/install-go-tools.sh), or from the
//! folder `MESHMART_KUBE_BIN` names. Without them [`Cluster::start`] says so loudly and
//! returns `None`, and the test passes, unless `MESHMART_REQUIRE_KUBE` is set to anything
//! but `0` (scripts/test.sh sets it): then it is an error. istioctl has its own switch,
//! `MESHMART_REQUIRE_ISTIOCTL` (scripts/test.sh sets it too).

pub mod mesh;

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// How long the API server may take to become ready (a cold start on a busy 2-core machine
/// takes 10-20 s).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// The API server's Service addresses: inside the range the harness owns, 10.233.0.0/16,
/// beside the mesh's bridge (`mesh::HOST_IP`'s /24).
pub const SERVICE_RANGE: &str = "10.233.16.0/20";
/// How long one kubectl, helm or istioctl command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// What can go wrong starting or using the cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key could not be made.
    #[error("certificates: {0}")]
    Cert(#[from] rcgen::Error),
    /// The kube client failed.
    #[error("kube client: {0}")]
    Kube(#[from] kube::Error),
    /// The kubeconfig could not be read back.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// A tool is missing while MESHMART_REQUIRE_KUBE is set.
    #[error("{0}")]
    Missing(String),
    /// A process exited early, or something did not become ready in time.
    #[error("{0}")]
    Failed(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// The repository's root (this crate is tests/kube-harness).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The namespaces a rendered YAML stream puts objects in (its `  namespace:` lines, as helm
/// and kustomize write them), sorted, each once.
pub fn namespaces_in(yaml: &str) -> Vec<String> {
    let mut names: Vec<String> = yaml
        .lines()
        .filter_map(|l| l.strip_prefix("  namespace: "))
        .map(|ns| ns.trim().trim_matches('"').to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The names of the chart's ci values files (`helm/meshmart/ci/*-values.yaml`,
/// chart-testing's convention), sorted; never empty.
pub fn ci_values_files() -> Result<Vec<String>, Error> {
    let dir = repo_root().join("helm/meshmart/ci");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .map_err(io(format!("read {}", dir.display())))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with("-values.yaml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Io {
            what: format!("find *-values.yaml in {}", dir.display()),
            source: std::io::ErrorKind::NotFound.into(),
        });
    }
    Ok(files)
}

/// The folder the tool binaries are taken from.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("MESHMART_KUBE_BIN")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| repo_root().join(".tools/bin"), PathBuf::from)
}

/// Whether the environment variable `var` is set to anything but empty or `0`.
pub fn set(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Whether a missing `tool` is a failure rather than a skip: MESHMART_REQUIRE_KUBE for the
/// cluster's tools and helm, MESHMART_REQUIRE_ISTIOCTL for istioctl.
fn required(tool: &str) -> bool {
    if tool == "istioctl" {
        set("MESHMART_REQUIRE_ISTIOCTL")
    } else {
        set("MESHMART_REQUIRE_KUBE")
    }
}

/// `Ok(true)` when every tool is in [`bin_dir`]; `Ok(false)` after a loud warning when one
/// is not (the caller skips); an error instead when MESHMART_REQUIRE_KUBE is set.
pub fn tools_present(test: &str, tools: &[&str]) -> Result<bool, Error> {
    let dir = bin_dir();
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| !dir.join(tool).is_file())
        .collect();
    if missing.is_empty() {
        return Ok(true);
    }
    let message = format!(
        "{} missing from {} (install them with scripts/install-go-tools.sh)",
        missing.join(", "),
        dir.display()
    );
    let var = if missing
        .iter()
        .any(|tool| *tool == "istioctl" && required(tool))
    {
        "MESHMART_REQUIRE_ISTIOCTL"
    } else {
        "MESHMART_REQUIRE_KUBE"
    };
    skip_unless_required(test, &message, var)
}

/// What a test does when something it needs is missing: an error when `var` is set (the
/// suite requires it), else `Ok(false)` after a warning loud enough to see in a test run
/// (the caller skips).
pub(crate) fn skip_unless_required(test: &str, message: &str, var: &str) -> Result<bool, Error> {
    if set(var) {
        return Err(Error::Missing(format!("{var} is set but {message}")));
    }
    eprintln!("\n==================== SKIPPED: {test} ====================");
    eprintln!("warning: {message}; this test did not run");
    eprintln!("==========================================================\n");
    Ok(false)
}

/// A child process, killed (and reaped) when dropped.
#[derive(Debug)]
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// The watchdog's script: while the test process ($1) lives, wait (at most WATCHDOG_SECS);
/// once it is gone without having dropped its [`Cluster`] (SIGKILL, an abort), kill the
/// processes listed in $2/pids and the process groups in $2/groups (the mesh's: pilot-agent
/// leaves its Envoy behind), run the commands in $2/cleanup (the mesh's network namespaces
/// and bridge, [`Cluster::on_abandon`]), and remove the directory $2. A [`Cluster`] that is
/// dropped kills its watchdog too (last), so the script never acts on a cluster that
/// cleaned up. Why a process: Linux's parent-death signal (PR_SET_PDEATHSIG) needs `unsafe`
/// in a pre_exec hook, which the workspace forbids.
const WATCHDOG: &str = r#"
i=0
while [ "$i" -lt "$3" ] && kill -0 "$1" 2>/dev/null; do sleep 1; i=$((i + 1)); done
case "$2" in *meshmart-kube-*) ;; *) exit 1 ;; esac
for pid in $(cat "$2/pids" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
for group in $(cat "$2/groups" 2>/dev/null); do pkill -9 -g "$group" 2>/dev/null; done
[ -f "$2/cleanup" ] && sh "$2/cleanup" >/dev/null 2>&1
rm -rf "$2"
"#;

/// Appends `line` to the file `path` (the watchdog's lists).
pub(crate) fn append_line(path: &Path, line: &str) -> Result<(), Error> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io(format!("open {}", path.display())))?;
    std::io::Write::write_all(&mut file, format!("{line}\n").as_bytes())
        .map_err(io(format!("write {}", path.display())))
}
/// How long a watchdog waits for its test process at most: longer than any test runs.
const WATCHDOG_SECS: u32 = 7200;

impl Proc {
    fn spawn(name: &'static str, dir: &Path, args: &[String], logs: &Path) -> Result<Proc, Error> {
        let proc = Self::spawn_program(name, &dir.join(name), args, logs)?;
        // The watchdog's list (see WATCHDOG), beside the logs.
        append_line(&logs.with_file_name("pids"), &proc.child.id().to_string())?;
        Ok(proc)
    }

    /// The watchdog of the cluster in `root` (see WATCHDOG).
    fn watchdog(root: &Path, logs: &Path) -> Result<Proc, Error> {
        let args = [
            "-c".to_owned(),
            WATCHDOG.to_owned(),
            "meshmart-kube-watchdog".to_owned(),
            std::process::id().to_string(),
            root.display().to_string(),
            WATCHDOG_SECS.to_string(),
        ];
        Self::spawn_program("watchdog", Path::new("/bin/sh"), &args, logs)
    }

    fn spawn_program(
        name: &'static str,
        program: &Path,
        args: &[String],
        logs: &Path,
    ) -> Result<Proc, Error> {
        let log = logs.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).map_err(io(format!("create {}", log.display())))?;
        let err = out.try_clone().map_err(io("dup log"))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io(format!("start {name}")))?;
        Ok(Proc { name, child, log })
    }

    /// An error naming the process and the end of its log, if it has exited.
    fn check(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Failed(format!(
                "{} exited ({status}); the end of its log:\n{}",
                self.name,
                tail(&self.log)
            ))),
            Err(e) => Err(io(format!("wait for {}", self.name))(e)),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Already gone is fine; there is nothing else to do about a failure here.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("bind 127.0.0.1:0"))?;
    Ok(listener.local_addr().map_err(io("local_addr"))?.port())
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(io(format!("write {}", path.display())))
}

/// The files the processes and clients need.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    admin_cert: PathBuf,
    admin_key: PathBuf,
    sa_key: PathBuf,
    sa_pub: PathBuf,
}

fn make_pki(dir: &Path) -> Result<Pki, Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "meshmart-test-ca");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::new(vec![
        "127.0.0.1".to_owned(),
        "localhost".to_owned(),
        "kubernetes".to_owned(),
        "kubernetes.default.svc".to_owned(),
    ])?;
    server
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &issuer)?;

    // The admin: system:masters passes every RBAC check.
    let admin_key = KeyPair::generate()?;
    let mut admin = CertificateParams::new(Vec::<String>::new())?;
    admin
        .distinguished_name
        .push(DnType::CommonName, "meshmart-test-admin");
    admin
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = admin.signed_by(&admin_key, &issuer)?;

    let sa_key = KeyPair::generate()?;

    let pki = Pki {
        ca: dir.join("ca.crt"),
        server_cert: dir.join("apiserver.crt"),
        server_key: dir.join("apiserver.key"),
        admin_cert: dir.join("admin.crt"),
        admin_key: dir.join("admin.key"),
        sa_key: dir.join("sa.key"),
        sa_pub: dir.join("sa.pub"),
    };
    write(&pki.ca, &ca_cert.pem())?;
    write(&pki.server_cert, &server_cert.pem())?;
    write(&pki.server_key, &server_key.serialize_pem())?;
    write(&pki.admin_cert, &admin_cert.pem())?;
    write(&pki.admin_key, &admin_key.serialize_pem())?;
    write(&pki.sa_key, &sa_key.serialize_pem())?;
    // The verifying side reads public keys (or PKCS#1/SEC1 private ones, not PKCS#8).
    write(&pki.sa_pub, &sa_key.public_key_pem())?;
    Ok(pki)
}

fn kubeconfig_text(server: &str, pki: &Pki) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: meshmart-test
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: admin
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: meshmart-test
  context:
    cluster: meshmart-test
    user: admin
current-context: meshmart-test
",
        ca = pki.ca.display(),
        cert = pki.admin_cert.display(),
        key = pki.admin_key.display(),
    )
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program args`, feeding it `stdin`, within [`COMMAND_TIMEOUT`]; an error with both
/// outputs when it fails.
pub async fn run<I, S>(program: &Path, args: I, stdin: Option<&str>) -> Result<Output, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let (shown, status, output) = run_any(program, args, stdin).await?;
    if !status.success() {
        return Err(Error::Failed(format!(
            "{shown}: {status}\n--- stdout\n{}\n--- stderr\n{}",
            output.stdout, output.stderr
        )));
    }
    Ok(output)
}

/// Like [`run`], but a non-zero exit is the caller's to judge: the command as shown, its
/// exit status and its output.
pub async fn run_any<I, S>(
    program: &Path,
    args: I,
    stdin: Option<&str>,
) -> Result<(String, std::process::ExitStatus, Output), Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_env(program, args, &[], stdin).await
}

/// [`run_any`] with `envs` added to the environment.
async fn run_env<I, S>(
    program: &Path,
    args: I,
    envs: &[(&str, PathBuf)],
    stdin: Option<&str>,
) -> Result<(String, std::process::ExitStatus, Output), Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args
        .into_iter()
        .map(|a| a.as_ref().to_os_string())
        .collect();
    let shown = format!(
        "{} {}",
        program.display(),
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut child = tokio::process::Command::new(program)
        .args(&args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io(format!("start {shown}")))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .map_err(io(format!("write to {shown}")))?;
    }
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| Error::Failed(format!("{shown}: no end within {COMMAND_TIMEOUT:?}")))?
        .map_err(io(format!("run {shown}")))?;
    let output = Output {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    Ok((shown, out.status, output))
}

/// etcd, kube-apiserver and kube-controller-manager on loopback; see the crate's docs.
pub struct Cluster {
    /// In start order; [`Drop`] kills them last first.
    procs: Vec<Proc>,
    kubeconfig: PathBuf,
    bin: PathBuf,
    client: kube::Client,
    /// Last, so it is removed after every process is gone.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("procs", &self.procs)
            .field("kubeconfig", &self.kubeconfig)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        while let Some(proc) = self.procs.pop() {
            drop(proc);
        }
    }
}

/// The tools [`Cluster::start`] needs.
pub const CLUSTER_TOOLS: &[&str] = &[
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
];

impl Cluster {
    /// A ready cluster with the Istio CRDs, or `None` (after a loud warning) when its tools
    /// are missing and MESHMART_REQUIRE_KUBE is not set. `test` names the caller in the
    /// warning; `extra_tools` are the other tools the test needs (helm, istioctl).
    pub async fn start(test: &str, extra_tools: &[&str]) -> Result<Option<Cluster>, Error> {
        let tools: Vec<&str> = CLUSTER_TOOLS.iter().chain(extra_tools).copied().collect();
        if !tools_present(test, &tools)? {
            return Ok(None);
        }
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("meshmart-kube-")
            .tempdir()
            .map_err(io("create a temporary directory"))?;
        let root = dir.path().to_path_buf();
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs).map_err(io("create logs/"))?;
        let pki = make_pki(&root)?;

        // First, so that it is killed last: after the others, by Drop.
        let mut procs = vec![Proc::watchdog(&root, &logs)?];
        let etcd_port = free_port()?;
        let peer_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        procs.push(Proc::spawn(
            "etcd",
            &bin,
            &[
                format!("--data-dir={}", root.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=default={peer_url}"),
                // A test cluster: losing it in a power cut is fine, waiting on fsync is not.
                "--unsafe-no-fsync".to_owned(),
                "--log-level=warn".to_owned(),
            ],
            &logs,
        )?);

        let api_port = free_port()?;
        let server = format!("https://127.0.0.1:{api_port}");
        procs.push(Proc::spawn(
            "kube-apiserver",
            &bin,
            &[
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".to_owned(),
                format!("--secure-port={api_port}"),
                format!("--cert-dir={}", root.join("certs").display()),
                format!("--tls-cert-file={}", pki.server_cert.display()),
                format!("--tls-private-key-file={}", pki.server_key.display()),
                format!("--client-ca-file={}", pki.ca.display()),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
                format!("--service-account-key-file={}", pki.sa_pub.display()),
                format!(
                    "--service-account-signing-key-file={}",
                    pki.sa_key.display()
                ),
                // Addresses to hand out to Services, never reached: nothing runs.
                // Inside the harness's own range, 10.233.0.0/16 (the mesh's bridge is
                // 10.233.0.0/24, src/mesh): Service addresses that nothing routes (no
                // kube-proxy; the mesh's sidecars bind their listeners explicitly).
                format!("--service-cluster-ip-range={SERVICE_RANGE}"),
                "--authorization-mode=RBAC".to_owned(),
                // No endpoints for the `kubernetes` Service: the advertised address is
                // loopback, and no Pod would ever use it.
                "--endpoint-reconciler-type=none".to_owned(),
                "--advertise-address=127.0.0.1".to_owned(),
                "--profiling=false".to_owned(),
            ],
            &logs,
        )?);

        let kubeconfig = root.join("kubeconfig");
        write(&kubeconfig, &kubeconfig_text(&server, &pki))?;
        let config = kube::Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&kubeconfig)?,
            &KubeConfigOptions::default(),
        )
        .await?;
        let client = kube::Client::try_from(config)?;
        wait_ready(&client, &mut procs).await?;

        procs.push(Proc::spawn(
            "kube-controller-manager",
            &bin,
            &[
                format!("--kubeconfig={}", kubeconfig.display()),
                // The default ServiceAccount of each namespace too, which a Pod without one needs.
                "--controllers=namespace,garbagecollector,serviceaccount,serviceaccount-token"
                    .to_owned(),
                format!(
                    "--service-account-private-key-file={}",
                    pki.sa_key.display()
                ),
                format!("--root-ca-file={}", pki.ca.display()),
                "--use-service-account-credentials=false".to_owned(),
                "--leader-elect=false".to_owned(),
                "--bind-address=127.0.0.1".to_owned(),
                format!("--secure-port={}", free_port()?),
                format!("--cert-dir={}", root.join("kcm-certs").display()),
                "--profiling=false".to_owned(),
            ],
            &logs,
        )?);

        let cluster = Cluster {
            procs,
            kubeconfig,
            bin,
            client,
            dir,
        };
        cluster.install_istio_crds().await?;
        Ok(Some(cluster))
    }

    /// The kubeconfig of the admin (system:masters).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A client for the admin.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The cluster's temporary directory (logs/ has each process's log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The path of a tool in the tools folder.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// Has the cluster's watchdog kill the process group `group` if the test process dies
    /// without dropping the cluster (the mesh's processes, each a group's leader).
    pub fn watch_group(&self, group: u32) -> Result<(), Error> {
        append_line(&self.dir.path().join("groups"), &group.to_string())
    }

    /// Has the cluster's watchdog run `command` (with `sh`, after killing the processes) if
    /// the test process dies without dropping the cluster: what undoes something the test
    /// made outside the cluster's directory (a network namespace, a bridge).
    pub fn on_abandon(&self, command: &str) -> Result<(), Error> {
        append_line(&self.dir.path().join("cleanup"), command)
    }

    /// The process ids of the cluster's processes (its watchdog's first).
    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|p| p.child.id()).collect()
    }

    /// An error if a process of the cluster has exited.
    pub fn check(&mut self) -> Result<(), Error> {
        self.procs.iter_mut().try_for_each(Proc::check)
    }

    /// `kubectl --kubeconfig <ours> args...`, with `stdin`.
    pub async fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<Output, Error> {
        let kubeconfig = format!("--kubeconfig={}", self.kubeconfig.display());
        let all = std::iter::once(kubeconfig.as_str()).chain(args.iter().copied());
        run(&self.tool("kubectl"), all, stdin).await
    }

    /// `helm --kubeconfig <ours> args...`, with Helm's cache, config and data homes in the
    /// cluster's directory, so that a test never reads or writes the user's own; an error,
    /// with both outputs, when helm fails.
    pub async fn helm(&self, args: &[&str]) -> Result<Output, Error> {
        let kubeconfig = format!("--kubeconfig={}", self.kubeconfig.display());
        let home = self.dir.path().join("helm");
        let envs = [
            ("HELM_CACHE_HOME", home.join("cache")),
            ("HELM_CONFIG_HOME", home.join("config")),
            ("HELM_DATA_HOME", home.join("data")),
        ];
        let all = std::iter::once(kubeconfig.as_str()).chain(args.iter().copied());
        let (shown, status, output) = run_env(&self.tool("helm"), all, &envs, None).await?;
        if !status.success() {
            return Err(Error::Failed(format!(
                "{shown}: {status}\n--- stdout\n{}\n--- stderr\n{}",
                output.stdout, output.stderr
            )));
        }
        Ok(output)
    }

    /// Creates namespaces that exist before a user's files are applied: what an Istio install
    /// or `helm install --create-namespace` makes.
    pub async fn create_namespaces<S: AsRef<str>>(&self, names: &[S]) -> Result<(), Error> {
        let yaml: String = names
            .iter()
            .map(|n| {
                let n = n.as_ref();
                format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {n}\n---\n")
            })
            .collect();
        self.apply(&yaml).await.map(drop)
    }

    /// `kubectl kustomize DIR`, DIR relative to the repository.
    pub async fn kustomize(&self, dir: &str) -> Result<String, Error> {
        let dir = repo_root().join(dir);
        let dir = dir.to_string_lossy();
        Ok(self.kubectl(&["kustomize", &dir], None).await?.stdout)
    }

    /// `kubectl apply --server-side` of a multi-document YAML stream; an error, with
    /// kubectl's words, if the server refuses any object.
    pub async fn apply(&self, yaml: &str) -> Result<Output, Error> {
        self.kubectl(
            &[
                "apply",
                "--server-side",
                "--field-manager=meshmart-tests",
                "-f",
                "-",
            ],
            Some(yaml),
        )
        .await
    }

    async fn install_istio_crds(&self) -> Result<(), Error> {
        let path = repo_root().join("tests/deploy/schemas/istio-crds.gen.yaml");
        let yaml =
            std::fs::read_to_string(&path).map_err(io(format!("read {}", path.display())))?;
        let want = yaml
            .lines()
            .filter(|l| l.trim_end() == "kind: CustomResourceDefinition")
            .count();
        self.apply(&yaml).await?;
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let list = crds.list(&ListParams::default()).await?;
            let established = list
                .items
                .iter()
                .filter(|crd| crd.spec.group.ends_with("istio.io"))
                .filter(|crd| {
                    crd.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c.type_ == "Established" && c.status == "True")
                        })
                })
                .count();
            if established >= want {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Failed(format!(
                    "{established} of {want} Istio CRDs established after {READY_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn wait_ready(client: &kube::Client, procs: &mut [Proc]) -> Result<(), Error> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last = String::new();
    loop {
        procs.iter_mut().try_for_each(Proc::check)?;
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .map_err(|e| Error::Failed(format!("a /readyz request: {e}")))?;
        match client.request_text(request).await {
            Ok(body) if body.trim() == "ok" => return Ok(()),
            Ok(body) => last = body,
            Err(e) => {
                last.clear();
                let _ = write!(last, "{e}");
            }
        }
        if Instant::now() > deadline {
            let logs: String = procs
                .iter()
                .map(|p| format!("--- {}\n{}\n", p.name, tail(&p.log)))
                .collect();
            return Err(Error::Failed(format!(
                "kube-apiserver not ready after {READY_TIMEOUT:?} (last answer: {last})\n{logs}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
