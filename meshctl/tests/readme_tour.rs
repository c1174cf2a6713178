//! Black-box: README.md's grpcurl tour, run as written. Every fenced `sh` block of the
//! section "A grpcurl tour" is cut into its commands, and each command runs through `sh`
//! against a real `meshctl up` (free ports, a temporary data folder), with the real grpcurl
//! and the real meshctl first on `PATH`. Only what a reader would change is changed: the
//! default addresses become the shop's, and the placeholders (`<id>`, `<id of tour-2>`,
//! `<ID>`) the ids that earlier replies showed. Each command must exit 0, or fail with the
//! status code its comment names; then what the comments promise is checked: stock held
//! once per reservation id, the same reply to a repeated CreateOrder, the order watched to
//! COMPLETED, the declined one to FAILED with the reason and its stock back, another
//! customer answered NOT_FOUND, and `meshctl dlq` listing, showing and replaying a dead
//! letter (one the test makes: the tour itself leaves none).
//!
//! grpcurl comes from the project's tool folder (`scripts/install-tools.sh`), or from
//! `MESHMART_GRPCURL` (`support/grpcurl.rs`); without it the test fails.

// Integration tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A synchronous black-box test: blocking waits and wall-clock deadlines are what it needs.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::{
    collections::BTreeMap,
    io::Read,
    os::unix::process::CommandExt,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use meshmart::events::{EventBus, EventsConfig, Outgoing, embedded::EmbeddedConfig};
use nix::{sys::signal::Signal, unistd::Pid};
use serde_json::Value;
use support::{grpcurl::Grpcurl, shop::Shop};

/// How long one command may take: a WatchOrder lasts until the order's final state.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// How long the dead letter the test makes may take to show in `meshctl dlq list`.
const DEAD_LETTER_WAIT: Duration = Duration::from_secs(30);

/// The gRPC codes a comment may name for a command that is meant to fail, and how grpcurl
/// writes them.
const CODES: [(&str, &str); 4] = [
    ("INVALID_ARGUMENT", "InvalidArgument"),
    ("NOT_FOUND", "NotFound"),
    ("ALREADY_EXISTS", "AlreadyExists"),
    ("FAILED_PRECONDITION", "FailedPrecondition"),
];

/// One command of the tour, as the README has it (continuation lines and multi-line quotes
/// included), with the comments of its paragraph.
#[derive(Debug)]
struct Step {
    text: String,
    comment: String,
}

impl Step {
    /// What the command does: `list`, `describe`, the method (`GetProduct`), or `dlq show`.
    fn action(&self) -> String {
        let words: Vec<&str> = self.text.split_whitespace().collect();
        if words.first() == Some(&"meshctl") {
            return words.get(1..3).map_or_else(
                || panic!("a meshctl command the test does not know: {}", self.text),
                |words| words.join(" "),
            );
        }
        if let Some(method) = words
            .iter()
            .find(|word| word.starts_with("meshmart.") || word.starts_with("grpc."))
            .and_then(|word| word.rsplit_once('/'))
        {
            return method.1.to_owned();
        }
        for verb in ["list", "describe"] {
            if words.contains(&verb) {
                return verb.to_owned();
            }
        }
        panic!("a tour command the test does not know: {}", self.text);
    }

    /// The code grpcurl must report, if the comments say the command fails.
    fn expected_code(&self) -> Option<&'static str> {
        CODES
            .iter()
            .find(|(name, _)| self.comment.contains(name) || self.text.contains(name))
            .map(|(_, grpcurl)| *grpcurl)
    }
}

/// The section "A grpcurl tour" of README.md, up to the next section.
fn tour_section() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    readme
        .split("\n## A grpcurl tour\n")
        .nth(1)
        .expect("README.md has a section \"A grpcurl tour\"")
        .split("\n## ")
        .next()
        .unwrap()
        .to_owned()
}

/// The section's fenced `sh` blocks, cut into commands.
fn tour() -> Vec<Step> {
    let section = tour_section();
    let mut steps = Vec::new();
    let mut rest = section.as_str();
    while let Some((_, block)) = rest.split_once("```sh\n") {
        let (block, after) = block.split_once("\n```").expect("a closed code block");
        steps.extend(commands(block));
        rest = after;
    }
    steps
}

/// A block's commands: a command goes on while a quote is open or a line ends with `\`; a
/// blank line ends a paragraph and its comments.
fn commands(block: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut comment = String::new();
    let mut command = String::new();
    let mut quoted = false;
    for line in block.lines() {
        if command.is_empty() {
            let trimmed = line.trim();
            if trimmed.is_empty() {
                comment.clear();
                continue;
            }
            if trimmed.starts_with('#') {
                comment.push_str(trimmed);
                comment.push('\n');
                continue;
            }
        }
        command.push_str(line);
        command.push('\n');
        let mut continued = false;
        let mut previous = ' ';
        for (i, c) in line.char_indices() {
            if quoted {
                quoted = c != '\'';
            } else if c == '\'' {
                quoted = true;
            } else if c == '#' && previous.is_whitespace() {
                break;
            } else if c == '\\' && line[i + 1..].trim().is_empty() {
                continued = true;
            }
            previous = c;
        }
        if !quoted && !continued {
            steps.push(Step {
                text: std::mem::take(&mut command),
                comment: comment.clone(),
            });
        }
    }
    assert!(
        command.is_empty(),
        "a command of the tour does not end (an open quote or a trailing \\):\n{command}"
    );
    steps
}

/// What a command did.
struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Output {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `script` with `sh -c` in `dir`, `env` added, in a process group of its own that is
/// killed after [`COMMAND_LIMIT`].
fn sh(script: &str, dir: &Path, env: &[(&str, String)]) -> Output {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let read = |mut stream: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + COMMAND_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let group = Pid::from_raw(i32::try_from(child.id()).unwrap());
            let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = Output {
        success: status.is_some_and(|status| status.success()),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    assert!(
        status.is_some(),
        "still running after {COMMAND_LIMIT:?}, killed:\n{script}\n{}",
        output.all()
    );
    output
}

/// The JSON messages grpcurl printed, one after another.
fn messages(text: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|error| panic!("not JSON messages ({error}):\n{text}"))
}

/// The `availableQuantity` grpcurl printed (a GetProduct reply, `-v` or not).
fn available(text: &str) -> i64 {
    let (_, rest) = text
        .split_once(r#""availableQuantity": ""#)
        .unwrap_or_else(|| panic!("no availableQuantity in:\n{text}"));
    rest.split('"').next().unwrap().parse().unwrap()
}

/// An order's state, the order's states as its history has them, and its failure reason.
fn order_of(message: &Value) -> (&str, Vec<&str>, &str) {
    let order = &message["order"];
    let history = order["history"]
        .as_array()
        .map(|history| {
            history
                .iter()
                .filter_map(|transition| transition["state"].as_str())
                .collect()
        })
        .unwrap_or_default();
    (
        order["state"].as_str().unwrap_or_default(),
        history,
        order["failureReason"].as_str().unwrap_or_default(),
    )
}

/// The tour in progress: the shop, and what earlier replies showed.
struct Tour {
    shop: Shop,
    grpcurl: Grpcurl,
    /// Where the commands run; its `bin/` has grpcurl and meshctl, first on `PATH`.
    dir: tempfile::TempDir,
    /// `<id>` and `<id of tour-2>`, and `<ID>`, once known.
    ids: BTreeMap<&'static str, String>,
    /// Stock of espresso-cup: at the tour's first GetProduct, and before the declined order.
    first_stock: Option<i64>,
    stock_before_declined: Option<i64>,
    /// How often each action ran, to check at the end that the tour still has them all.
    done: BTreeMap<String, usize>,
}

impl Tour {
    fn new(shop: Shop, grpcurl: Grpcurl) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(grpcurl.path(), bin.join("grpcurl")).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_meshctl"), bin.join("meshctl")).unwrap();
        Self {
            shop,
            grpcurl,
            dir,
            ids: BTreeMap::new(),
            first_stock: None,
            stock_before_declined: None,
            done: BTreeMap::new(),
        }
    }

    /// The command as a reader would run it against this shop.
    fn script(&self, step: &Step) -> String {
        let mut script = self.shop.at_shop_addrs(&step.text);
        // The longest first: `<id of tour-2>` before `<id>`.
        for placeholder in ["<id of tour-2>", "<id>", "<ID>"] {
            if script.contains(placeholder) {
                let id = self.ids.get(placeholder).unwrap_or_else(|| {
                    panic!("{placeholder} before a reply showed it:\n{}", step.text)
                });
                script = script.replace(placeholder, id);
            }
        }
        assert!(
            !script.contains('<'),
            "a placeholder the test does not know:\n{}",
            step.text
        );
        script
    }

    fn run(&self, step: &Step) -> Output {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let env = [
            ("PATH", path),
            // What `meshctl dlq --orchestrator-addr` would say; its default is the default
            // port.
            (
                "ORCHESTRATOR_ADDR",
                format!("http://{}", self.shop.grpc_addr("orchestrator")),
            ),
        ];
        let script = self.script(step);
        let output = sh(&script, self.dir.path(), &env);
        match step.expected_code() {
            None => assert!(output.success, "failed:\n{script}\n{}", output.all()),
            Some(code) => {
                assert!(!output.success, "did not fail:\n{script}\n{}", output.all());
                assert!(
                    output.stderr.contains(&format!("Code: {code}")),
                    "not {code}:\n{script}\n{}",
                    output.all()
                );
            }
        }
        output
    }

    /// Runs one command, checks what its comments promise, and keeps what later ones need.
    fn step(&mut self, step: &Step) {
        let action = step.action();
        let count = {
            let count = self.done.entry(action.clone()).or_default();
            *count += 1;
            *count
        };
        if action.starts_with("dlq") && !self.ids.contains_key("<ID>") {
            self.make_a_dead_letter();
        }
        if action == "CreateOrder" && step.text.contains("tok_visa_declined") {
            // The stock before the declined order, to check that it comes back.
            let reply = self.grpcurl.call(
                &self.shop.grpc_addr("catalog"),
                "meshmart.catalog.v1.CatalogService/GetProduct",
                r#"{"name": "products/espresso-cup"}"#,
            );
            self.stock_before_declined = Some(available(&reply));
        }
        let output = self.run(step);
        let out = output.all();
        match action.as_str() {
            "list" => assert!(out.contains("meshmart.catalog.v1.CatalogService"), "{out}"),
            "describe" => assert!(
                out.contains("rpc GetProduct") || out.contains("message Product"),
                "{out}"
            ),
            "GetProduct" => self.get_product(count, &out),
            "ListProducts" if step.expected_code().is_some() => {
                assert_eq!(step.expected_code(), Some("InvalidArgument"), "{step:?}");
                // A google.rpc.BadRequest naming each bad field.
                for field in ["page_size", "page_token"] {
                    assert!(
                        out.contains("google.rpc.BadRequest")
                            && out.contains(&format!(r#""field":"{field}""#)),
                        "{field}: {out}"
                    );
                }
            }
            "ListProducts" => assert!(out.contains("nextPageToken"), "{out}"),
            "ReserveStock" => {
                assert!(out.contains("RESERVATION_STATE_ACTIVE"), "{out}");
                // "Repeat it: the same reservation_id holds stock once" (the GetProduct
                // after it checks the once).
                let again = self.run(step);
                assert!(
                    again.stdout.contains("RESERVATION_STATE_ACTIVE"),
                    "{}",
                    again.all()
                );
            }
            "CreateProduct" => assert!(out.contains("products/moka-pot"), "{out}"),
            "UpdateProduct" => assert!(out.contains("Stovetop, 6 cups"), "{out}"),
            "Check" => assert!(out.contains(r#""status": "SERVING""#), "{out}"),
            "CreateOrder" => self.create_order(step, &output),
            "WatchOrder" => self.watch_order(step, &output),
            "ListCharges" | "ListShipments" | "ListNotifications" | "GetSaga" => {
                let id = &self.ids["<id>"];
                assert!(
                    out.contains(id.as_str()),
                    "{action} does not name {id}:\n{out}"
                );
            }
            // Another customer's order: NOT_FOUND (checked above) is all there is to see.
            "GetOrder" => {
                assert_eq!(step.expected_code(), Some("NotFound"), "{step:?}");
                assert!(
                    step.text.contains("x-meshmart-customer-id: bob"),
                    "{step:?}"
                );
            }
            "dlq list" => {
                assert!(out.contains(&self.ids["<ID>"]), "{out}");
                assert!(out.contains("orchestrator") && out.contains("orders.created"));
            }
            "dlq show" => assert!(
                out.contains("readme-tour-poison") && out.contains("decode"),
                "{out}"
            ),
            "dlq replay" => assert!(
                out.contains("orders.created delivered again to orchestrator"),
                "{out}"
            ),
            _ => panic!("a tour command the test does not check: {}", step.text),
        }
    }

    fn get_product(&mut self, count: usize, out: &str) {
        let stock = available(out);
        match count {
            // -v shows who answered.
            1 => {
                assert!(
                    out.contains("x-meshmart-service: catalog")
                        && out.contains("x-meshmart-version: v1"),
                    "{out}"
                );
                self.first_stock = Some(stock);
            }
            // After ReserveStock, run twice: "availableQuantity went down by 2".
            2 => assert_eq!(Some(stock + 2), self.first_stock, "{out}"),
            // After the declined order: "availableQuantity as before the order".
            3 => assert_eq!(Some(stock), self.stock_before_declined, "{out}"),
            _ => panic!("a fourth GetProduct the test does not check:\n{out}"),
        }
    }

    fn create_order(&mut self, step: &Step, output: &Output) {
        let placeholder = if step.text.contains(r#""request_id": "tour-1""#) {
            "<id>"
        } else if step.text.contains(r#""request_id": "tour-2""#) {
            "<id of tour-2>"
        } else {
            panic!("an order the test does not know:\n{}", step.text);
        };
        let replies = messages(&output.stdout);
        let [reply] = replies.as_slice() else {
            panic!("not one reply:\n{}", output.all());
        };
        let (state, _, _) = order_of(reply);
        assert_eq!(state, "STATE_PENDING", "{reply}");
        let name = reply["order"]["name"].as_str().unwrap_or_default();
        let id = name
            .strip_prefix("orders/")
            .unwrap_or_else(|| panic!("no orders/<id>: {reply}"));
        self.ids.insert(placeholder, id.to_owned());
        if placeholder == "<id>" {
            // "Repeat the call: the same request_id is the same order, answered the same."
            let again = self.run(step);
            assert_eq!(messages(&again.stdout), replies, "{}", again.all());
        }
    }

    fn watch_order(&mut self, step: &Step, output: &Output) {
        let watched = messages(&output.stdout);
        let states: Vec<&str> = watched.iter().map(|m| order_of(m).0).collect();
        let last = watched
            .last()
            .unwrap_or_else(|| panic!("nothing watched:\n{}", output.all()));
        let (state, history, reason) = order_of(last);
        if step.text.contains("<id of tour-2>") {
            // "... STATE_FAILED, "card declined""
            assert_eq!(state, "STATE_FAILED", "{states:?}");
            assert_eq!(history, ["STATE_PENDING", "STATE_FAILED"], "{last}");
            assert!(reason.contains("card declined"), "{last}");
        } else {
            // The order now, then once per transition (PAID, SHIPPED, COMPLETED); the
            // stream ends at the final state.
            assert_eq!(state, "STATE_COMPLETED", "{states:?}");
            assert_eq!(
                history,
                [
                    "STATE_PENDING",
                    "STATE_PAID",
                    "STATE_SHIPPED",
                    "STATE_COMPLETED"
                ],
                "{last}"
            );
            let flow = [
                "STATE_PENDING",
                "STATE_PAID",
                "STATE_SHIPPED",
                "STATE_COMPLETED",
            ];
            let positions: Vec<usize> = states
                .iter()
                .map(|s| flow.iter().position(|f| f == s).unwrap())
                .collect();
            assert!(
                positions.windows(2).all(|w| w[0] < w[1]),
                "one message per transition, in order: {states:?}"
            );
        }
    }

    /// The tour leaves no dead letter; the test makes one for the `meshctl dlq` commands:
    /// an OrderCreated that cannot be decoded, which the orchestrator (and every other group
    /// on that subject) gives up on at once.
    fn make_a_dead_letter(&mut self) {
        let list = |tour: &Self| {
            tour.run(&Step {
                text: "meshctl dlq list".to_owned(),
                comment: String::new(),
            })
            .stdout
        };
        assert_eq!(list(self), "no dead letters\n");
        let events =
            EventsConfig::Embedded(EmbeddedConfig::at(self.shop.data_dir().join("events.db")));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let bus = meshmart::events::connect(&events).await.unwrap();
            bus.publish(Outgoing {
                subject: "orders.created".to_owned(),
                message_id: "readme-tour-poison".to_owned(),
                headers: Default::default(),
                payload: vec![0xff, 0xff].into(),
            })
            .await
            .unwrap();
        });
        let deadline = Instant::now() + DEAD_LETTER_WAIT;
        let id = loop {
            let out = list(self);
            // `ID  CONSUMER  SUBJECT ...`, then a row per dead letter. Every group on
            // orders.created gives the poison up, in no set order: take the orchestrator's.
            if let Some(row) = out
                .lines()
                .skip(1)
                .find(|row| row.split_whitespace().nth(1) == Some("orchestrator"))
            {
                break row.split_whitespace().next().unwrap().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no dead letter within {DEAD_LETTER_WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        self.ids.insert("<ID>", id);
    }
}

#[test]
fn the_readme_tour_works_as_written() {
    let grpcurl = Grpcurl::find();
    let steps = tour();
    let mut tour = Tour::new(Shop::start(&[]), grpcurl);
    for step in &steps {
        tour.step(step);
    }
    // Every part of the tour is still there, and ran.
    for (action, times) in [
        ("list", 1),
        ("describe", 2),
        ("GetProduct", 3),
        ("ListProducts", 2),
        ("ReserveStock", 1),
        ("CreateProduct", 1),
        ("UpdateProduct", 1),
        ("Check", 2),
        ("CreateOrder", 2),
        ("WatchOrder", 2),
        ("ListCharges", 1),
        ("ListShipments", 1),
        ("ListNotifications", 1),
        ("GetSaga", 1),
        ("GetOrder", 1),
        ("dlq list", 1),
        ("dlq show", 1),
        ("dlq replay", 1),
    ] {
        assert_eq!(
            tour.done.get(action).copied().unwrap_or_default(),
            times,
            "{action}: {:?}",
            tour.done
        );
    }
}

#[test]
fn the_tour_is_cut_into_its_commands() {
    let steps = commands(
        "# a comment\n\
         grpcurl -d '{\n  \"a\": 1}' \\\n  host m/A   # it's a trailing comment\n\
         \n\
         grpcurl host list\n",
    );
    let texts: Vec<&str> = steps.iter().map(|step| step.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "grpcurl -d '{\n  \"a\": 1}' \\\n  host m/A   # it's a trailing comment\n",
            "grpcurl host list\n"
        ]
    );
    assert_eq!(steps[0].comment, "# a comment\n");
    assert_eq!(steps[1].comment, "");
}
