{{/*
Helpers shared by the templates. The services' resources are named after the services
(catalog, inventory, ...), never prefixed by the release: the services find each other by
those names (INVENTORY_ADDR=http://inventory:50052), so one release per namespace. What is
not a service's own (the gateway and its policies, the edge routes, the Telemetry, the
PostgreSQL setup Job) is named after the release (meshmart.fullname), and what lives in a
shared gateway's namespace after the release and its namespace too (meshmart.gatewayPrefix),
so that two releases never share a name (tests/kube-harness/tests/helm.rs installs two of the
same name on one shared gateway).
*/}}

{{/*
The release's name for what is not a service's own: the release name when it contains the
chart's ("meshmart"), else <release>-meshmart; at most 36 characters, so that the longest name
made from it (the setup Job's, <fullname>-postgres-setup-<checksum>) fits the 63 of a label.
*/}}
{{- define "meshmart.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 36 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 36 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
The name prefix of what the release puts beside its gateway (JWT policies, EnvoyFilters and
the Envoy filters they insert, the gateway's Telemetry): the fullname when the gateway is the
release's own, in its namespace; on a shared gateway in another namespace, the fullname and the
release's namespace, since releases of the same name in two namespaces meet there.
*/}}
{{- define "meshmart.gatewayPrefix" -}}
{{- $gw := include "meshmart.gateway" . | fromYaml -}}
{{- if eq $gw.namespace .Release.Namespace -}}
{{- include "meshmart.fullname" . -}}
{{- else -}}
{{- printf "%s-%s" (include "meshmart.fullname" .) .Release.Namespace | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
meshmart.gateway: the ingress gateway the release's edge uses, as YAML (fromYaml): the
release's own (ingress.gateway.create, the default: <fullname>-gateway in the release
namespace, selected by its own label) or the shared one that ingress.gateway names.
*/}}
{{- define "meshmart.gateway" -}}
{{- $gw := .Values.ingress.gateway -}}
{{- if $gw.create -}}
{{- $name := printf "%s-gateway" (include "meshmart.fullname" .) -}}
create: true
name: {{ $name }}
namespace: {{ .Release.Namespace }}
serviceAccount: {{ $name }}
selector:
  istio: {{ $name }}
{{- else -}}
create: false
name: ""
namespace: {{ $gw.namespace }}
serviceAccount: {{ $gw.serviceAccount }}
selector:
  {{- toYaml $gw.selector | nindent 2 }}
{{- end -}}
{{- end -}}

{{/*
meshmart.hosts: the hostnames the edge serves, as a YAML list (fromYamlArray): ingress.hosts,
else for the release's own gateway "*": its Gateway selects only this release's gateway pods,
so every host there is ours (a port-forward's localhost, its Service's cluster name). Not
"localhost": Istio reads a name without a dot as <name>.<namespace>.svc.<domain>, and a
Gateway refuses it (IST0106). A shared gateway needs them named: "*" there would take every
other app's hosts.
*/}}
{{- define "meshmart.hosts" -}}
{{- $gw := include "meshmart.gateway" . | fromYaml -}}
{{- if .Values.ingress.hosts -}}
{{- toYaml .Values.ingress.hosts -}}
{{- else if $gw.create -}}
- "*"
{{- else -}}
{{- fail "ingress.hosts is required with a shared gateway (ingress.gateway.create=false): name this release's hostnames, so that it does not take another app's" -}}
{{- end -}}
{{- end -}}

{{/* The listener port of the gateway's pods behind ingress.port (the Service port): unprivileged, as Istio's own gateways. */}}
{{- define "meshmart.gatewayTargetPort" -}}
{{- if .Values.ingress.tlsCredentialName -}}8443{{- else -}}8080{{- end -}}
{{- end -}}

{{/* Whether any enabled service is exposed at the edge: "true" or "". */}}
{{- define "meshmart.hasEdge" -}}
{{- range $name, $svc := include "meshmart.services" . | fromYaml -}}
{{- if $svc.edge -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/*
meshmart.deepMerge: .override merged into a copy of .base, recursively; every value of
.override wins, including false, 0 and "". (Sprig's mergeOverwrite skips such "empty"
values, so `autoscaling: {enabled: false}` would silently keep the default true.)
Lists are replaced, not merged. Returns YAML.
*/}}
{{- define "meshmart.deepMerge" -}}
{{- $out := deepCopy .base -}}
{{- range $key, $value := .override -}}
{{- $current := get $out $key -}}
{{- if and (kindIs "map" $value) (kindIs "map" $current) -}}
{{- $_ := set $out $key (include "meshmart.deepMerge" (dict "base" $current "override" $value) | fromYaml) -}}
{{- else -}}
{{- $_ := set $out $key $value -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/*
meshmart.services: the enabled services, each entry of .Values.services merged over
.Values.serviceDefaults, with its `name` set, keyed by name. Also checks what the schema
cannot: references between entries. Returns YAML (use with fromYaml).
*/}}
{{- define "meshmart.services" -}}
{{- $all := dict -}}
{{- range $name, $entry := .Values.services -}}
{{- $svc := include "meshmart.deepMerge" (dict "base" $.Values.serviceDefaults "override" ($entry | default dict)) | fromYaml -}}
{{- if $svc.enabled -}}
{{- $_ := set $svc "name" $name -}}
{{- $_ := set $all $name $svc -}}
{{- end -}}
{{- end -}}
{{- range $name, $svc := $all -}}
{{- if not $svc.port -}}
{{- fail (printf "services.%s.port is required" $name) -}}
{{- end -}}
{{- if not $svc.grpcService -}}
{{- fail (printf "services.%s.grpcService is required" $name) -}}
{{- end -}}
{{- range $caller := $svc.allowedCallers -}}
{{- if not (hasKey $all $caller) -}}
{{- fail (printf "services.%s.allowedCallers names %q, which is not an enabled service" $name $caller) -}}
{{- end -}}
{{- end -}}
{{- if and $svc.canary.enabled (eq $svc.canary.version $svc.version) -}}
{{- fail (printf "services.%s.canary.version must differ from its version %q" $name $svc.version) -}}
{{- end -}}
{{- if and $svc.database.enabled (not $svc.database.existingSecret) (not $svc.database.password) -}}
{{- fail (printf "services.%s.database needs a password or an existingSecret" $name) -}}
{{- end -}}
{{- end -}}
{{- if not (or $.Values.image.registry $.Values.image.local) -}}
{{- fail "image.registry is required: the registry the cluster pulls the images from (e.g. --set image.registry=registry.example.com/meshmart), or image.local=true for images loaded into kind or minikube (scripts/kind-up.sh)" -}}
{{- end -}}
{{- if and $.Values.ingress.reflectionService (not (get (get $all $.Values.ingress.reflectionService | default dict) "edge")) -}}
{{- fail (printf "ingress.reflectionService %q is not an enabled edge service" $.Values.ingress.reflectionService) -}}
{{- end -}}
{{- toYaml $all -}}
{{- end -}}

{{/* meshmart.variants: the Deployments of one service (.svc): its version, and the canary. */}}
{{- define "meshmart.variants" -}}
{{- $variants := list (dict "version" .svc.version "tag" "" "canary" false) -}}
{{- if .svc.canary.enabled -}}
{{- $variants = append $variants (dict "version" .svc.canary.version "tag" .svc.canary.tag "canary" true) -}}
{{- end -}}
{{- toYaml $variants -}}
{{- end -}}

{{/*
The header that names the calling customer: the services read it (meshmart::customer), the
gateway sets it from the JWT and strips it from outside callers.
*/}}
{{- define "meshmart.customerHeader" -}}
x-meshmart-customer-id
{{- end -}}

{{/* Labels every resource of the chart carries. */}}
{{- define "meshmart.labels" -}}
app.kubernetes.io/part-of: meshmart
{{- end -}}

{{/* Fully qualified name of a Service (.name) in the release namespace. */}}
{{- define "meshmart.fqdn" -}}
{{ .name }}.{{ .root.Release.Namespace }}.svc.{{ .root.Values.mesh.clusterDomain }}
{{- end -}}

{{/* SPIFFE principal of a ServiceAccount (.name) in namespace .namespace (default: the release's). */}}
{{- define "meshmart.principal" -}}
{{ .root.Values.mesh.trustDomain }}/ns/{{ .namespace | default .root.Release.Namespace }}/sa/{{ .name }}
{{- end -}}

{{/*
Image of a service (.svc: a service, or any map with the image's name) for a variant tag
(.tag, empty for the default). Local images (image.local) default to the name
scripts/build-images.sh tags them with.
*/}}
{{- define "meshmart.image" -}}
{{- $registry := .root.Values.image.registry | default (ternary "meshmart" "" .root.Values.image.local) -}}
{{- if not $registry -}}
{{- fail "image.registry is required (or image.local=true)" -}}
{{- end -}}
{{ $registry }}/{{ .svc.name }}:{{ .tag | default .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- end -}}

{{/* A service's (.svc) DATABASE_URL: its own role and database, on the bundled or external server. */}}
{{- define "meshmart.databaseUrl" -}}
{{- $pg := .root.Values.postgresql -}}
postgres://{{ .svc.name }}:{{ .svc.database.password }}@{{ $pg.host }}:{{ $pg.port }}/{{ .svc.name }}?sslmode={{ $pg.sslMode }}
{{- end -}}

{{/* Pull policy of the chart's own images: Never for images loaded into the nodes. */}}
{{- define "meshmart.pullPolicy" -}}
{{- if .Values.image.local -}}Never{{- else -}}{{ .Values.image.pullPolicy }}{{- end -}}
{{- end -}}

{{/*
Annotations of every pod that gets a sidecar: its resources, so that the namespace's total
request is what the chart says; a native sidecar (an init container that keeps running), so
that on shutdown the proxy stops only after the app has drained, and a Job's pod completes;
the proxy's own drain (drainDuration, terminationDrainDuration); and hold the app until the
proxy is up, so the first outbound call (migrations against PostgreSQL) has a mesh to go
through.
*/}}
{{- define "meshmart.proxyAnnotations" -}}
sidecar.istio.io/proxyCPU: {{ .Values.mesh.proxy.requests.cpu | quote }}
sidecar.istio.io/proxyMemory: {{ .Values.mesh.proxy.requests.memory | quote }}
sidecar.istio.io/proxyCPULimit: {{ .Values.mesh.proxy.limits.cpu | quote }}
sidecar.istio.io/proxyMemoryLimit: {{ .Values.mesh.proxy.limits.memory | quote }}
sidecar.istio.io/nativeSidecar: "true"
proxy.istio.io/config: {{ include "meshmart.proxyConfig" (dict "root" . "hold" true) | squote }}
{{- end -}}

{{/*
ProxyConfig of a pod's proxy, as JSON: its drain, (.hold) holding the app until it is up,
and Envoy's runtime guard that answers a gRPC call its route's timeout ended with
DEADLINE_EXCEEDED rather than UNAVAILABLE (the HTTP 504 mapping), which callers and the
mesh would retry as if the service were down (envoyproxy/envoy#44479; off by default in
Envoy 1.40).
*/}}
{{- define "meshmart.proxyConfig" -}}
{{- $drain := printf "%ds" (int .root.Values.mesh.proxy.drainSeconds) -}}
{{- $runtime := dict "envoy.reloadable_features.grpc_timeout_returns_deadline_exceeded" "true" -}}
{{- $config := dict "drainDuration" $drain "terminationDrainDuration" $drain "runtimeValues" $runtime -}}
{{- if .hold -}}
{{- $_ := set $config "holdApplicationUntilProxyStarts" true -}}
{{- end -}}
{{- toJson $config -}}
{{- end -}}

{{/* Pod and container security settings shared by every workload (.uid: its user). */}}
{{- define "meshmart.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "meshmart.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop:
    - ALL
{{- end -}}

{{/*
Checks skipped for checkov (https://www.checkov.io), by annotation on each workload so the
reason sits next to what it excuses. .extra adds workload-specific skips.
*/}}
{{- define "meshmart.checkovSkips" -}}
checkov.io/skip1: CKV_K8S_43=Pinned by tag; images loaded into kind/minikube have no registry digest
checkov.io/skip2: CKV_K8S_15=Images loaded into the cluster cannot be pulled; registries set pullPolicy
checkov.io/skip3: CKV2_K8S_6=Istio AuthorizationPolicies deny by default and allow callers by identity
{{- range $i, $skip := .extra }}
checkov.io/skip{{ add $i 4 }}: {{ $skip }}
{{- end }}
{{- end -}}

{{/*
The environment of a service (.svc), as ConfigMap data. Its sha256 goes into the pod
template so that a configuration change rolls the pods.
*/}}
{{- define "meshmart.serviceConfig" -}}
{{- $root := .root -}}
{{- $svc := .svc -}}
{{- $services := .services -}}
GRPC_ADDR: "0.0.0.0:{{ $svc.port }}"
METRICS_ADDR: "0.0.0.0:{{ $root.Values.runtime.metricsPort }}"
LOG_FORMAT: {{ $root.Values.runtime.logFormat | quote }}
RUST_LOG: {{ $root.Values.runtime.rustLog | quote }}
SHUTDOWN_DRAIN_DELAY_SECS: {{ $root.Values.runtime.drainDelaySeconds | quote }}
SHUTDOWN_GRACE_PERIOD_SECS: {{ $root.Values.runtime.gracePeriodSeconds | quote }}
SEED_DEMO_DATA: {{ $root.Values.runtime.seedDemoData | quote }}
{{- if $svc.database.enabled }}
DATABASE_MAX_CONNECTIONS: {{ $svc.database.maxConnections | quote }}
{{- else }}
DATA_DIR: /data
{{- end }}
{{- if $svc.nats }}
NATS_URL: {{ $root.Values.nats.url | quote }}
{{- end }}
{{- range $calleeName, $callee := $services }}
{{- if has $svc.name $callee.allowedCallers }}
{{ $calleeName | upper | replace "-" "_" }}_ADDR: "http://{{ $calleeName }}:{{ $callee.port }}"
{{- end }}
{{- end }}
{{- with include "meshmart.otlpEndpoint" $root }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
OTEL_SERVICE_NAME: {{ $svc.name | quote }}
{{- end }}
{{- range $key, $value := $svc.env }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/*
The HTTP routes of a service's VirtualService (.svc), for the mesh (.edge false) or for
the ingress gateway (.edge true; its routes are the service's `routes` with its
`edgeRoutes` merged over them). One route per retry class (reads, writes, streams, other),
each preceded by a route pinned to the canary for calls that carry the canary header.
*/}}
{{- define "meshmart.httpRoutes" -}}
{{- $root := .root -}}
{{- $svc := .svc -}}
{{- $edge := .edge -}}
{{- $host := include "meshmart.fqdn" (dict "root" $root "name" $svc.name) -}}
{{- $prefix := printf "/%s/" $svc.grpcService -}}
{{- $classes := list (list "reads" $svc.methods.reads) (list "writes" $svc.methods.writes) (list "streams" $svc.methods.streams) (list "other" list) -}}
{{- $pins := list false -}}
{{- if $svc.canary.enabled -}}
{{- $pins = list true false -}}
{{- end -}}
{{- range $class := $classes -}}
{{- $className := index $class 0 -}}
{{- $methods := index $class 1 -}}
{{- $route := get $svc.routes $className -}}
{{- if and $edge (hasKey $svc.edgeRoutes $className) -}}
{{- $route = include "meshmart.deepMerge" (dict "base" $route "override" (get $svc.edgeRoutes $className)) | fromYaml -}}
{{- end -}}
{{- if or $methods (eq $className "other") -}}
{{- range $pinned := $pins }}
- name: {{ $svc.name }}-{{ $className }}{{ if $pinned }}-{{ $svc.canary.version }}-pinned{{ end }}
  {{- if or $methods $edge $pinned }}
  match:
    {{- if $methods }}
    {{- range $method := $methods }}
    - uri:
        exact: {{ $prefix }}{{ $method }}
      {{- if $pinned }}
      headers:
        {{ $root.Values.canaryHeader }}:
          exact: {{ $svc.canary.version }}
      {{- end }}
    {{- end }}
    {{- else if $edge }}
    - uri:
        prefix: {{ $prefix }}
      {{- if $pinned }}
      headers:
        {{ $root.Values.canaryHeader }}:
          exact: {{ $svc.canary.version }}
      {{- end }}
    {{- else }}
    - headers:
        {{ $root.Values.canaryHeader }}:
          exact: {{ $svc.canary.version }}
    {{- end }}
  {{- end }}
  {{- if and $svc.canary.enabled (not $pinned) }}
  {{- /* The split lives in the service's delegate VirtualService (canaryweights.yaml), which
  `meshctl canary` writes; this route keeps its match, timeout and retries (Istio merges). */}}
  delegate:
    name: {{ $svc.name }}-weights
    namespace: {{ $root.Release.Namespace }}
  {{- else }}
  route:
    {{- if $pinned }}
    - destination:
        host: {{ $host }}
        subset: {{ $svc.canary.version }}
        port:
          number: {{ $svc.port }}
    {{- else }}
    - destination:
        host: {{ $host }}
        subset: {{ $svc.version }}
        port:
          number: {{ $svc.port }}
    {{- end }}
  {{- end }}
  {{- /* A zero timeout is no route timeout, Istio's default: leave the field out, since the
  VirtualService CRD rejects a timeout under 1ms (a CEL rule the API server enforces). */}}
  {{- if not (regexMatch "^0+(\\.0*)?(ns|us|µs|ms|s|m|h)?$" (toString $route.timeout)) }}
  timeout: {{ $route.timeout }}
  {{- end }}
  {{- /* attempts: 0 alone turns retries off (Istio drops the rest of the policy then). */}}
  retries:
    attempts: {{ $route.attempts }}
    {{- if $route.attempts }}
    {{- with $route.perTryTimeout }}
    perTryTimeout: {{ . }}
    {{- end }}
    retryOn: {{ $route.retryOn }}
    {{- end }}
  {{- if and (not $edge) (or $svc.fault.delay.enabled $svc.fault.abort.enabled) }}
  fault:
    {{- if $svc.fault.delay.enabled }}
    delay:
      fixedDelay: {{ $svc.fault.delay.fixedDelay }}
      percentage:
        value: {{ $svc.fault.delay.percentage }}
    {{- end }}
    {{- if $svc.fault.abort.enabled }}
    abort:
      grpcStatus: {{ $svc.fault.abort.grpcStatus }}
      percentage:
        value: {{ $svc.fault.abort.percentage }}
    {{- end }}
  {{- end }}
{{- end }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The PostgreSQL setup Job's script (.owners: the services whose roles and databases the chart
owns): waits for the server, then for each service creates its login role and its database
if they are missing and sets the role's password, so running it again changes nothing but a
changed password. psql takes the server from PGHOST, PGPORT, PGUSER, PGPASSWORD, and each
password from <SERVICE>_DB_PASSWORD. tests/deploy runs it twice against a real PostgreSQL.
*/}}
{{- define "meshmart.postgresSetupScript" -}}
set -eu
tries=0
until pg_isready --quiet; do
  tries=$((tries + 1))
  if [ "$tries" -ge 120 ]; then
    echo "PostgreSQL at $PGHOST:$PGPORT did not answer within 240s" >&2
    exit 1
  fi
  sleep 2
done
# A login role and a database it owns, named after the service: created when missing
# (CREATE ROLE has no IF NOT EXISTS, hence the DO block; CREATE DATABASE cannot run in one,
# hence \gexec), the password set every time.
ensure_database() {
  psql -v ON_ERROR_STOP=1 -X -q --set=name="$1" --set=password="$2" <<'SQL'
SET meshmart.role TO :'name';
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = current_setting('meshmart.role')) THEN
    EXECUTE format('CREATE ROLE %I LOGIN', current_setting('meshmart.role'));
  END IF;
END
$$;
ALTER ROLE :"name" WITH LOGIN PASSWORD :'password';
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'name')
  WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = :'name') \gexec
ALTER DATABASE :"name" OWNER TO :"name";
SQL
}
{{- range $name := .owners }}
ensure_database {{ $name }} "${{ $name | upper | replace "-" "_" }}_DB_PASSWORD"
{{- end }}
echo "roles and databases are in place"
{{- end -}}

{{/*
The observability stack (observability.*, templates/observability/): its parts are the
release's, not a service's, so they are named after it: <fullname>-<part> (.part: otel-collector,
jaeger, prometheus, loki, grafana). .root is the chart's context.
*/}}
{{- define "meshmart.obsName" -}}
{{- printf "%s-%s" (include "meshmart.fullname" .root) .part -}}
{{- end -}}

{{/*
Where the services send their OTLP (OTEL_EXPORTER_OTLP_ENDPOINT): tracing.otlpEndpoint when set,
else the stack's collector when it is enabled, else nothing.
*/}}
{{- define "meshmart.otlpEndpoint" -}}
{{- if .Values.tracing.otlpEndpoint -}}
{{- .Values.tracing.otlpEndpoint -}}
{{- else if .Values.observability.enabled -}}
http://{{ include "meshmart.obsName" (dict "root" . "part" "otel-collector") }}:4317
{{- end -}}
{{- end -}}

{{/*
The mesh's tracing provider the Telemetry names: tracing.provider when set, else with the stack
enabled meshmart-otel, the provider docs/deploy.md has istiod define (an opentelemetry provider
whose service is the collector, port 4317). Empty: no Telemetry.
*/}}
{{- define "meshmart.tracingProvider" -}}
{{- if .Values.tracing.provider -}}
{{- .Values.tracing.provider -}}
{{- else if .Values.observability.enabled -}}
meshmart-otel
{{- end -}}
{{- end -}}

{{/*
Labels of a part of the stack (.part) on its objects and pods. Out of the mesh: no sidecar (see
values.yaml, observability), so the NetworkPolicies of templates/observability/ guard it.
*/}}
{{- define "meshmart.obsLabels" -}}
{{ include "meshmart.labels" .root }}
app: {{ include "meshmart.obsName" . }}
app.kubernetes.io/component: observability
{{- end -}}

{{- define "meshmart.obsPodLabels" -}}
{{ include "meshmart.obsLabels" . }}
app.kubernetes.io/name: {{ .part }}
sidecar.istio.io/inject: "false"
{{- end -}}

{{/* checkov skips of every part of the stack (.extra adds its own). */}}
{{- define "meshmart.obsCheckovSkips" -}}
checkov.io/skip1: CKV_K8S_43=Pinned by version tag (nothing is pulled here); a mirror pins the digest
checkov.io/skip2: CKV_K8S_15=A pinned version tag does not change, so IfNotPresent pulls it once
{{- range $i, $skip := .extra }}
checkov.io/skip{{ add $i 3 }}: {{ $skip }}
{{- end }}
{{- end -}}

{{/*
The collector's configuration (.jaeger, .loki: their Services). Every pipeline names only the
receivers, processors and exporters defined here (tests/observability/test_chart_stack.py).
*/}}
{{- define "meshmart.collectorConfig" -}}
extensions:
  health_check:
    endpoint: ${env:POD_IP}:13133
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: ${env:POD_IP}:4317
      http:
        endpoint: ${env:POD_IP}:4318
processors:
  # Refuse data (the senders retry) before the container's memory limit is near.
  memory_limiter:
    check_interval: 1s
    limit_percentage: 80
    spike_limit_percentage: 20
  batch:
    timeout: 2s
exporters:
  otlp/jaeger:
    endpoint: {{ .jaeger }}:4317
    tls:
      insecure: true
  # Loki 3 takes OTLP logs at /otlp (the exporter adds /v1/logs).
  otlphttp/loki:
    endpoint: http://{{ .loki }}:3100/otlp
    tls:
      insecure: true
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [otlp/jaeger]
    logs:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [otlphttp/loki]
  telemetry:
    logs:
      level: info
{{- end -}}

{{/* Jaeger v2's configuration (observability.jaeger): tests/observability/jaeger.yaml on the pod's address. */}}
{{- define "meshmart.jaegerConfig" -}}
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    # Its own metrics would listen on another port nobody scrapes: off.
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_query:
    storage:
      traces: memstore
    # Every address, the loopback too: kubectl port-forward connects to localhost in the pod.
    http:
      endpoint: 0.0.0.0:16686
    grpc:
      endpoint: ${env:POD_IP}:16685
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: {{ int .maxTraces }}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: ${env:POD_IP}:4317
processors:
  batch: {}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
{{- end -}}

{{/*
Prometheus's configuration (.namespace: the release's, .interval): the pods of the namespace
that ask to be scraped, at the address and path their prometheus.io annotations give (after
Istio's injection: the sidecar's merged metrics, :15020/stats/prometheus), labelled with their
namespace, pod, app and version; and the committed alert rules. tests/observability checks it
with promtool.
*/}}
{{- define "meshmart.prometheusConfig" -}}
global:
  scrape_interval: {{ .interval }}
  evaluation_interval: {{ .interval }}
rule_files:
  - /etc/prometheus/rules/alerts.yaml
scrape_configs:
  - job_name: pods
    kubernetes_sd_configs:
      - role: pod
        namespaces:
          names: [{{ .namespace | quote }}]
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
        regex: "true"
        action: keep
      # Running pods only (a finished Job's pod keeps its annotations).
      - source_labels: [__meta_kubernetes_pod_phase]
        regex: Running
        action: keep
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path]
        regex: (.+)
        target_label: __metrics_path__
      # The pod's address with the annotation's port (one target per pod, whatever its ports).
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_port, __meta_kubernetes_pod_ip]
        regex: (\d+);(([A-Fa-f0-9]{1,4}::?){1,7}[A-Fa-f0-9]{1,4})
        replacement: "[$2]:$1"
        target_label: __address__
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_port, __meta_kubernetes_pod_ip]
        regex: (\d+);((([0-9]+?)(\.|$)){4})
        replacement: "$2:$1"
        target_label: __address__
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
      - source_labels: [__meta_kubernetes_pod_label_app]
        target_label: app
      - source_labels: [__meta_kubernetes_pod_label_version]
        target_label: version
  - job_name: prometheus
    static_configs:
      - targets: ["localhost:9090"]
{{- end -}}

{{/*
Loki's configuration (observability.loki): one process, its ring in memory, chunks and a TSDB
index on the filesystem (/loki), OTLP accepted (structured metadata), retention by the compactor.
*/}}
{{- define "meshmart.lokiConfig" -}}
auth_enabled: false
server:
  http_listen_port: 3100
  grpc_listen_port: 9095
  log_level: info
common:
  # One instance: it talks to itself on the loopback, whatever the pod's interfaces.
  instance_addr: 127.0.0.1
  path_prefix: /loki
  replication_factor: 1
  ring:
    kvstore:
      store: inmemory
  storage:
    filesystem:
      chunks_directory: /loki/chunks
      rules_directory: /loki/rules
schema_config:
  configs:
    - from: "2024-01-01"
      store: tsdb
      object_store: filesystem
      schema: v13
      index:
        prefix: index_
        period: 24h
limits_config:
  allow_structured_metadata: true
  retention_period: {{ .retention }}
compactor:
  working_directory: /loki/compactor
  retention_enabled: true
  delete_request_store: filesystem
analytics:
  reporting_enabled: false
{{- end -}}

{{/*
Grafana's datasources, provisioned under the uids the committed dashboards name (prometheus;
jaeger and loki for Explore): tests/observability checks every uid a dashboard references.
*/}}
{{- define "meshmart.grafanaDatasources" -}}
{{- $root := .root -}}
apiVersion: 1
datasources:
  - name: Prometheus
    uid: prometheus
    type: prometheus
    access: proxy
    url: http://{{ include "meshmart.obsName" (dict "root" $root "part" "prometheus") }}:9090
    isDefault: true
    editable: false
  - name: Jaeger
    uid: jaeger
    type: jaeger
    access: proxy
    url: http://{{ include "meshmart.obsName" (dict "root" $root "part" "jaeger") }}:16686
    editable: false
    jsonData:
      # From a span to the logs of its trace (the services' OTLP logs carry the trace id).
      tracesToLogsV2:
        datasourceUid: loki
        filterByTraceID: true
  - name: Loki
    uid: loki
    type: loki
    access: proxy
    url: http://{{ include "meshmart.obsName" (dict "root" $root "part" "loki") }}:3100
    editable: false
{{- end -}}
