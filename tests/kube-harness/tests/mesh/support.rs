//! What the mesh tests share: how a test is written, tokens from the demo issuer, and gRPC
//! clients through the gateway (from the host, outside the mesh) or through a workload's
//! sidecar (from inside its network namespace).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use kube_harness::mesh::NAMESPACE;
use kube_harness::mesh::{EGRESS_IP, Shop};
use kube_harness::repo_root;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

/// A test's outcome: a failure says what the user would have seen.
pub(crate) type Outcome = Result<(), String>;
pub(crate) type TestFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;
/// A test: its name, and what it does with the shop.
pub(crate) type Test = fn(Arc<Shop>) -> TestFuture;

/// The longest one call may take (the routes' own timeouts are shorter).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// `Err(text)` from anything that displays, with what was being done.
pub(crate) fn fail<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// `Err` unless `condition`, with `message`.
pub(crate) fn ensure(condition: bool, message: impl FnOnce() -> String) -> Outcome {
    if condition { Ok(()) } else { Err(message()) }
}

/// A token from scripts/mint-jwt.py (the chart's demo issuer), with `args`.
pub(crate) fn token(args: &[&str]) -> Result<String, String> {
    let script = repo_root().join("scripts/mint-jwt.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .map_err(fail("run mint-jwt.py"))?;
    if !out.status.success() {
        return Err(format!(
            "mint-jwt.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A channel to the ingress gateway, from the host.
pub(crate) async fn edge(shop: &Shop) -> Result<Channel, String> {
    Endpoint::from_shared(shop.gateway().to_owned())
        .map_err(fail("the gateway's address"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(fail("connect to the gateway"))
}

/// `message` with `authorization: Bearer <token>` (when given) and the call timeout.
pub(crate) fn authorized<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token
        && let Ok(value) = format!("Bearer {token}").parse()
    {
        request.metadata_mut().insert("authorization", value);
    }
    request.set_timeout(CALL_TIMEOUT);
    request
}

/// A channel, opened inside a workload's namespace, to `service`'s port through the
/// workload's sidecar: its outbound listener on [`EGRESS_IP`], with the Service's name as
/// the authority (what the namespace's /etc/hosts resolves for the services themselves;
/// a thread that only entered the network namespace still has the host's /etc/hosts).
pub(crate) async fn through_sidecar(service: &str, port: u16) -> Result<Channel, String> {
    let origin = format!("http://{service}.{NAMESPACE}.svc.cluster.local:{port}")
        .parse()
        .map_err(fail("the service's authority"))?;
    Endpoint::from_shared(format!("http://{EGRESS_IP}:{port}"))
        .map_err(fail("the sidecar's address"))?
        .origin(origin)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(fail("connect to the sidecar's outbound listener"))
}

/// Runs `task` inside the network namespace of the workload `name`.
pub(crate) async fn inside<F, Fut, T>(shop: &Shop, name: &str, task: F) -> Result<T, String>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, String>>,
    T: Send + 'static,
{
    let workload = shop.workload(name).map_err(|e| e.to_string())?;
    workload
        .netns
        .run(task)
        .await
        .map_err(fail(&format!("in {name}'s namespace")))?
}

/// The code a call came to (`Ok` for an answer).
pub(crate) fn code<T>(result: &Result<T, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// `GET path` of a workload's Envoy admin interface (127.0.0.1:15000 in its namespace).
pub(crate) async fn envoy_admin(shop: &Shop, name: &str, path: &str) -> Result<String, String> {
    let path = path.to_owned();
    inside(shop, name, move || async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect("127.0.0.1:15000")
            .await
            .map_err(fail("connect to envoy's admin"))?;
        // HTTP/1.1 (Envoy answers 426 to 1.0), one request per connection.
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(fail("write to envoy's admin"))?;
        let mut body = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut body))
            .await
            .map_err(fail("envoy's admin answer"))?
            .map_err(fail("read envoy's admin answer"))?;
        let text = String::from_utf8_lossy(&body).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("envoy's admin answered no HTTP: {text}"))?;
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            return Ok(dechunk(body));
        }
        Ok(body.to_owned())
    })
    .await
}

/// The value of the Envoy counter `name` in a workload's proxy (0 when it has none yet).
pub(crate) async fn counter(shop: &Shop, workload: &str, name: &str) -> Result<u64, String> {
    Ok(counters(shop, workload)
        .await?
        .into_iter()
        .find_map(|(n, v)| (n == name).then_some(v))
        .unwrap_or(0))
}

/// The payload of a chunked HTTP/1.1 body (RFC 9112, section 7.1), chunk extensions and
/// trailers dropped.
pub(crate) fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = size.split(';').next().unwrap_or("");
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The sum of the Envoy counters in a workload's proxy whose names end with `suffix`.
pub(crate) async fn counter_sum(shop: &Shop, workload: &str, suffix: &str) -> Result<u64, String> {
    Ok(counters(shop, workload)
        .await?
        .into_iter()
        .filter_map(|(n, v)| n.ends_with(suffix).then_some(v))
        .sum())
}

/// Every counter of a workload's proxy (Envoy's `/stats`) by name. Istio's tag extraction
/// marks where a tag ends with `;` (`cluster.inbound|5432||;.`): the names here have none.
async fn counters(shop: &Shop, workload: &str) -> Result<Vec<(String, u64)>, String> {
    let stats = envoy_admin(shop, workload, "/stats").await?;
    Ok(stats
        .lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(": ")?;
            Some((name.replace(';', ""), value.trim().parse().ok()?))
        })
        .collect())
}
