//! `meshctl dlq`: the event bus's dead letters, through the orchestrator's
//! DeadLetterService (every consumer group's, not only the orchestrator's).
//!
//! Exit codes: 0 done; 1 no such dead letter (NOT_FOUND: a replay retried after it went
//! through lands here too); 2 a usage error; 3 the orchestrator is out of reach or failed.

use std::{process::ExitCode, time::Duration};

use clap::{Args, Subcommand};
use meshmart::proto::orchestrator::{
    DeadLetter, GetDeadLetterRequest, ListDeadLettersRequest, ReplayDeadLetterRequest,
    dead_letter_service_client::DeadLetterServiceClient,
};
use tonic::{Code, transport::Channel};

/// How long to wait for the orchestrator to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub(crate) struct Options {
    /// The orchestrator, which serves the dead letters
    #[arg(
        long,
        env = "ORCHESTRATOR_ADDR",
        default_value = "http://127.0.0.1:50057",
        global = true
    )]
    orchestrator_addr: String,
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List dead letters, oldest first
    List {
        /// Only those of this consumer group, for example payments
        #[arg(long)]
        consumer: Option<String>,
    },
    /// Show one dead letter, with its event as JSON (payment tokens redacted)
    Show {
        /// The dead letter's id, as `list` shows it (or deadLetters/ID)
        id: String,
    },
    /// Deliver a dead letter's event again to the group that gave up on it, and remove it
    Replay {
        /// The dead letter's id, as `list` shows it (or deadLetters/ID)
        id: String,
    },
}

/// Why a command failed, and with which exit code.
enum Failed {
    NotFound(String),
    Other(String),
}

pub(crate) fn run(options: &Options) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("meshctl: cannot start: {error}");
            return ExitCode::from(3);
        }
    };
    let mut out = String::new();
    match runtime.block_on(execute(options, &mut out)) {
        Ok(()) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(Failed::NotFound(message)) => {
            eprintln!("meshctl: {message}");
            ExitCode::from(1)
        }
        Err(Failed::Other(message)) => {
            eprintln!("meshctl: {message}");
            ExitCode::from(3)
        }
    }
}

async fn execute(options: &Options, out: &mut String) -> Result<(), Failed> {
    let addr = &options.orchestrator_addr;
    let channel = Channel::from_shared(addr.clone())
        .map_err(|error| Failed::Other(format!("--orchestrator-addr {addr}: {error}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .map_err(|error| {
            Failed::Other(format!("cannot reach the orchestrator at {addr}: {error}"))
        })?;
    let mut client = DeadLetterServiceClient::new(channel);
    match &options.command {
        DlqCommand::List { consumer } => {
            let letters = list(&mut client, consumer.as_deref().unwrap_or_default()).await?;
            out.push_str(&table(&letters));
        }
        DlqCommand::Show { id } => {
            let letter = client
                .get_dead_letter(GetDeadLetterRequest { name: name(id) })
                .await
                .map_err(|status| failed(id, &status))?
                .into_inner()
                .dead_letter
                .unwrap_or_default();
            out.push_str(&details(&letter));
        }
        DlqCommand::Replay { id } => {
            let letter = client
                .replay_dead_letter(ReplayDeadLetterRequest { name: name(id) })
                .await
                .map_err(|status| failed(id, &status))?
                .into_inner()
                .dead_letter
                .unwrap_or_default();
            out.push_str(&format!(
                "replayed dead letter {}: {} delivered again to {}\n",
                letter.dead_letter_id, letter.subject, letter.consumer
            ));
        }
    }
    Ok(())
}

async fn list(
    client: &mut DeadLetterServiceClient<Channel>,
    consumer: &str,
) -> Result<Vec<DeadLetter>, Failed> {
    let mut letters = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_dead_letters(ListDeadLettersRequest {
                page_size: 100,
                page_token,
                consumer: consumer.to_owned(),
            })
            .await
            .map_err(|status| failed("", &status))?
            .into_inner();
        letters.extend(page.dead_letters);
        if page.next_page_token.is_empty() {
            return Ok(letters);
        }
        page_token = page.next_page_token;
    }
}

/// `42` or `deadLetters/42` as the resource name.
fn name(id: &str) -> String {
    if id.starts_with("deadLetters/") {
        id.to_owned()
    } else {
        format!("deadLetters/{id}")
    }
}

fn failed(id: &str, status: &tonic::Status) -> Failed {
    match status.code() {
        Code::NotFound => Failed::NotFound(format!(
            "dead letter {} not found (never there, or already replayed)",
            id.trim_start_matches("deadLetters/")
        )),
        // Not an id at all: no such dead letter either.
        Code::InvalidArgument => Failed::NotFound(status.message().to_owned()),
        code => Failed::Other(format!(
            "the orchestrator answered {code:?}: {}",
            status.message()
        )),
    }
}

fn time(letter: &DeadLetter) -> String {
    letter
        .dead_letter_time
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// One line per dead letter, in columns; the error cut to fit a terminal.
fn table(letters: &[DeadLetter]) -> String {
    if letters.is_empty() {
        return "no dead letters\n".to_owned();
    }
    const MAX_ERROR: usize = 60;
    let rows: Vec<[String; 6]> = letters
        .iter()
        .map(|l| {
            let mut error: String = l.error.replace('\n', " ").chars().take(MAX_ERROR).collect();
            if l.error.chars().count() > MAX_ERROR {
                error.push('…');
            }
            [
                l.dead_letter_id.clone(),
                l.consumer.clone(),
                l.subject.clone(),
                l.attempts.to_string(),
                time(l),
                error,
            ]
        })
        .collect();
    let header = [
        "ID",
        "CONSUMER",
        "SUBJECT",
        "ATTEMPTS",
        "DEAD SINCE",
        "ERROR",
    ]
    .map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

fn details(letter: &DeadLetter) -> String {
    let payload = if letter.payload_json.is_empty() {
        "(does not decode as its event)".to_owned()
    } else {
        serde_json::from_str::<serde_json::Value>(&letter.payload_json)
            .ok()
            .and_then(|value| serde_json::to_string_pretty(&value).ok())
            .unwrap_or_else(|| letter.payload_json.clone())
    };
    let event_type = if letter.event_type.is_empty() {
        "(not an event of the order flow)"
    } else {
        &letter.event_type
    };
    format!(
        "id:          {}\nconsumer:    {}\nsubject:     {}\nevent type:  {event_type}\n\
         message id:  {}\nattempts:    {}\ndead since:  {}\nerror:       {}\nevent:\n{payload}\n",
        letter.dead_letter_id,
        letter.consumer,
        letter.subject,
        letter.message_id,
        letter.attempts,
        time(letter),
        letter.error,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up() {
        let letter = DeadLetter {
            dead_letter_id: "7".to_owned(),
            consumer: "payments".to_owned(),
            subject: "payments.requested".to_owned(),
            attempts: 8,
            error: "x".repeat(100),
            ..DeadLetter::default()
        };
        let text = table(&[letter]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID  CONSUMER  SUBJECT"), "{text}");
        assert!(
            lines[1].starts_with("7   payments  payments.requested"),
            "{text}"
        );
        assert!(lines[1].ends_with('…'), "{text}");
        assert_eq!(table(&[]), "no dead letters\n");
    }

    #[test]
    fn ids_become_names() {
        assert_eq!(name("42"), "deadLetters/42");
        assert_eq!(name("deadLetters/42"), "deadLetters/42");
    }
}
