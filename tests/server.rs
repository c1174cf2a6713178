//! The server every service runs, seen from a real gRPC client on loopback: deadlines end
//! as DEADLINE_EXCEEDED, unknown methods are named, messages above the limit are
//! RESOURCE_EXHAUSTED, reflection lists what is served, health watches do not hold up a
//! drain, and trace headers are forwarded without any propagator work when nothing is
//! exported.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use meshmart::{
    client::MeshChannel,
    config::{MAX_MESSAGE_BYTES, ServerConfig, ServiceInfo},
    proto::echo::{
        EchoRequest, EchoResponse,
        echo_service_client::EchoServiceClient,
        echo_service_server::{EchoService, EchoServiceServer},
    },
    server::{Listeners, ServiceHost},
};
use tokio::{
    sync::{Mutex, oneshot},
    task::JoinHandle,
};
use tonic::{Code, Request, Response, Status, metadata::MetadataMap, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const ECHO: ServiceInfo = ServiceInfo {
    name: "echo",
    grpc_port: 50050,
};

/// An echo service that can be slow, can relay to another echo service, and records the
/// metadata of what it is sent.
#[derive(Clone, Default)]
struct TestEcho {
    calls: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<MetadataMap>>>,
    downstream: Option<EchoServiceClient<MeshChannel>>,
}

#[tonic::async_trait]
impl EchoService for TestEcho {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().await.push(request.metadata().clone());
        let message = request.into_inner().message;
        if let Some(millis) = message.strip_prefix("sleep:") {
            tokio::time::sleep(Duration::from_millis(millis.parse().unwrap())).await;
        }
        if let Some(downstream) = &self.downstream {
            return downstream
                .clone()
                .echo(EchoRequest { message })
                .await
                .map_err(|status| meshmart::client::downstream_failure("echo", &status));
        }
        Ok(Response::new(EchoResponse { message }))
    }
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<meshmart::Result<()>>,
}

impl Running {
    async fn start(echo: TestEcho, tune: impl FnOnce(&mut ServerConfig)) -> Self {
        let mut config = ServerConfig {
            service: ECHO,
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            version: "v1".into(),
            drain_delay: Duration::ZERO,
            grace_period: Duration::from_secs(5),
            max_message_bytes: MAX_MESSAGE_BYTES,
        };
        tune(&mut config);
        let listeners = Listeners::bind(&config).await.unwrap();
        let addr = listeners.grpc_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let host = ServiceHost::new(&config).add_service(EchoServiceServer::new(echo));
        let task = tokio::spawn(host.serve(listeners, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn stop(mut self) -> meshmart::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap()
    }
}

fn echo(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.to_owned(),
    }
}

/// A gRPC client over a bare HTTP/2 connection: unlike tonic's channel, it does not
/// enforce `grpc-timeout` itself, so what comes back is what the server answered.
async fn bare_client(
    addr: SocketAddr,
) -> EchoServiceClient<
    impl tonic::client::GrpcService<
        tonic::body::Body,
        ResponseBody = hyper::body::Incoming,
        Error = hyper::Error,
    > + Clone,
> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let uri: http::Uri = format!("http://{addr}").parse().unwrap();
    EchoServiceClient::with_origin(Http2(sender), uri)
}

#[derive(Clone)]
struct Http2(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tower::Service<http::Request<tonic::body::Body>> for Http2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

#[tokio::test]
async fn a_deadline_that_passes_is_deadline_exceeded_never_cancelled() {
    let service = TestEcho::default();
    let running = Running::start(service.clone(), |_| {}).await;
    let mut client = bare_client(running.addr).await;

    let mut slow = Request::new(echo("sleep:5000"));
    slow.set_timeout(Duration::from_millis(100));
    let status = client.echo(slow).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");

    // Already expired on arrival: answered at once, and the handler never runs.
    let before = service.calls.load(Ordering::SeqCst);
    let mut expired = Request::new(echo("hello"));
    expired
        .metadata_mut()
        .insert("grpc-timeout", "1n".parse().unwrap());
    let status = client.echo(expired).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(service.calls.load(Ordering::SeqCst), before);

    // A deadline with time to spare changes nothing.
    let mut roomy = Request::new(echo("hello"));
    roomy.set_timeout(Duration::from_secs(10));
    assert_eq!(
        client.echo(roomy).await.unwrap().into_inner().message,
        "hello"
    );
    running.stop().await.unwrap();
}

#[tokio::test]
async fn an_unknown_method_is_unimplemented_and_named() {
    let running = Running::start(TestEcho::default(), |_| {}).await;
    let mut grpc = tonic::client::Grpc::new(running.channel().await);
    for path in [
        "/meshmart.echo.v1.EchoService/Nope",
        "/no.such.v1.Service/Method",
    ] {
        grpc.ready().await.unwrap();
        let status = grpc
            .unary::<EchoRequest, EchoResponse, _>(
                Request::new(echo("x")),
                http::uri::PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{path}");
        assert!(status.message().contains(path), "{path}: {status:?}");
    }
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_message_above_the_limit_is_resource_exhausted() {
    let running = Running::start(TestEcho::default(), |config| {
        config.max_message_bytes = 1024;
    })
    .await;
    let mut client = EchoServiceClient::new(running.channel().await);
    let status = client.echo(echo(&"x".repeat(2000))).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // Below the limit, on the same connection, all is well.
    let small = "y".repeat(1000);
    assert_eq!(
        client
            .echo(echo(&small))
            .await
            .unwrap()
            .into_inner()
            .message,
        small
    );
    running.stop().await.unwrap();
}

#[tokio::test]
async fn reflection_lists_exactly_what_is_served() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let running = Running::start(TestEcho::default(), |_| {}).await;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(running.channel().await)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply: {reply:?}");
    };
    let names: BTreeSet<String> = list.service.into_iter().map(|s| s.name).collect();
    let expected: BTreeSet<String> = [
        "meshmart.echo.v1.EchoService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(names, expected);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_health_watch_ends_when_the_drain_starts() {
    // A grace period far longer than the test: a watch that held the drain would show.
    let running = Running::start(TestEcho::default(), |config| {
        config.grace_period = Duration::from_secs(600);
    })
    .await;
    let mut watch = HealthClient::new(running.channel().await)
        .watch(HealthCheckRequest {
            service: "meshmart.echo.v1.EchoService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    let stopped = tokio::spawn(running.stop());
    let last = watch.message().await.unwrap().unwrap();
    assert_eq!(last.status(), ServingStatus::NotServing);
    let ended = watch.message().await.unwrap_err();
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    tokio::time::timeout(Duration::from_secs(60), stopped)
        .await
        .expect("the drain waited on the health watch")
        .unwrap()
        .unwrap();
}

/// Counts every use of the global propagator.
#[derive(Debug, Default)]
struct CountingPropagator(Arc<AtomicUsize>);

impl opentelemetry::propagation::TextMapPropagator for CountingPropagator {
    fn inject_context(
        &self,
        _: &opentelemetry::Context,
        _: &mut dyn opentelemetry::propagation::Injector,
    ) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn extract_with_context(
        &self,
        cx: &opentelemetry::Context,
        _: &dyn opentelemetry::propagation::Extractor,
    ) -> opentelemetry::Context {
        self.0.fetch_add(1, Ordering::SeqCst);
        cx.clone()
    }

    fn fields(&self) -> opentelemetry::propagation::text_map_propagator::FieldIter<'_> {
        opentelemetry::propagation::text_map_propagator::FieldIter::new(&[])
    }
}

#[tokio::test]
async fn without_export_trace_headers_are_forwarded_and_no_propagator_runs() {
    let uses = Arc::new(AtomicUsize::new(0));
    opentelemetry::global::set_text_map_propagator(CountingPropagator(uses.clone()));

    let downstream = TestEcho::default();
    let below = Running::start(downstream.clone(), |_| {}).await;
    let relay = TestEcho {
        downstream: Some(EchoServiceClient::new(
            meshmart::client::connect_lazy(&format!("http://{}", below.addr)).unwrap(),
        )),
        ..TestEcho::default()
    };
    let above = Running::start(relay, |_| {}).await;

    let headers = [
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("x-request-id", "req-1"),
        ("b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"),
        ("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("x-b3-spanid", "00f067aa0ba902b7"),
    ];
    let mut request = Request::new(echo("hello"));
    for (name, value) in headers {
        request.metadata_mut().insert(name, value.parse().unwrap());
    }
    EchoServiceClient::new(above.channel().await)
        .echo(request)
        .await
        .unwrap();

    let seen = downstream.seen.lock().await[0].clone();
    for (name, value) in headers {
        assert_eq!(seen.get(name).unwrap(), value, "{name}");
    }
    assert_eq!(uses.load(Ordering::SeqCst), 0, "a propagator ran per call");
    above.stop().await.unwrap();
    below.stop().await.unwrap();
}

#[tokio::test]
async fn a_downstream_unavailable_is_passed_on_marked_not_to_be_retried() {
    // Downstream is a closed port: the relay's call fails UNAVAILABLE.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let relay = TestEcho {
        downstream: Some(EchoServiceClient::new(
            meshmart::client::connect_lazy(&format!("http://{closed}")).unwrap(),
        )),
        ..TestEcho::default()
    };
    let running = Running::start(relay, |_| {}).await;
    let status = EchoServiceClient::new(running.channel().await)
        .echo(echo("hello"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(
        status
            .metadata()
            .get(meshmart::client::NO_RETRY_HEADER)
            .unwrap(),
        "true"
    );
    running.stop().await.unwrap();
}
