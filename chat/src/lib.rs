//! `bluetick chat`: a terminal client on the SDK.
//!
//! - `bluetick chat --as alice --to bob`: interactive. Type a line to send
//!   it; each sent message shows ✓ (stored), ✓✓ (delivered) and `read` as
//!   receipts arrive. Messages shown here are marked read.
//! - `bluetick chat --as alice --group NAME`: the same in one of alice's
//!   groups, found by name over HTTP (`GET /v1/groups`); each message
//!   shows its sender, ✓✓ and `read` mean every member, and membership
//!   changes show as lines of their own.
//! - `bluetick chat send --as alice --to bob "hi"`: send one message, wait
//!   for ✓, print its server id.
//! - `bluetick chat listen --as bob --json`: print every event as a JSON
//!   line.
//!
//! `--as NAME` asks the local store for a short-lived token (an operator
//! convenience on the server's machine); `--user NAME --token T` uses a
//! token from `POST /v1/tokens` instead. `--tls` connects to the server's
//! TLS listener (trusting the system's roots, or `--ca-file PATH`), so the
//! token never crosses the network in clear.
//!
//! Everything shown comes from other people (or from the server), so every
//! text goes through [`shown`] first: a message cannot clear the screen,
//! move the cursor, fake a line or reorder what is displayed.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use client::{AppEvent, Client};
use protocol::messages::ReceiptStatus;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;


/// Lifetime of tokens minted by `--as`.
pub const CHAT_TOKEN_TTL: Duration = Duration::from_secs(86_400);

/// What the chat takes from the server's configuration.
pub struct Local<'a> {
    /// The MQTT listener (default `--server`).
    pub mqtt_addr: std::net::SocketAddr,
    /// The MQTT TLS listener (default `--server` with `--tls`).
    pub tls_addr: std::net::SocketAddr,
    /// Where the outbox and inbox position live by default (`chat/`).
    pub data_dir: &'a std::path::Path,
    /// Mints a token for `--as NAME` from the local store.
    pub mint_token: &'a dyn Fn(&str) -> anyhow::Result<String>,
    /// The HTTP API (default `--http`), where `--group` names are looked up.
    pub http_addr: std::net::SocketAddr,
}

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    identity: Identity,
    /// The peer to chat with (interactive mode and `send`).
    #[arg(long, global = true, conflicts_with = "group")]
    to: Option<String>,
    /// The group to chat in (interactive mode and `send`): the name of one
    /// of your groups.
    #[arg(long, global = true)]
    group: Option<String>,
    /// The server's HTTP API, where `--group` is looked up (default:
    /// http://ADDR of this config's http.addr).
    #[arg(long, global = true)]
    http: Option<String>,
    #[command(subcommand)]
    action: Option<ChatAction>,
}

#[derive(Args)]
struct Identity {
    /// Chat as this user, with a token minted from the local store.
    #[arg(long = "as", global = true, conflicts_with_all = ["user", "token"])]
    as_user: Option<String>,
    /// Chat as this user, with `--token`.
    #[arg(long, global = true, requires = "token")]
    user: Option<String>,
    /// Access token (from POST /v1/tokens).
    #[arg(long, global = true, env = "BLUETICK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Device name: the MQTT client id is USER.DEVICE.
    #[arg(long, global = true, default_value = "cli")]
    device: String,
    /// MQTT server (default: this config's mqtt.addr, or mqtt.tls_addr
    /// with `--tls`).
    #[arg(long, global = true)]
    server: Option<std::net::SocketAddr>,
    /// Speak MQTT over TLS (the server's TLS listener), trusting the
    /// system's root certificates, or `--ca-file`'s.
    #[arg(long, global = true)]
    tls: bool,
    /// PEM file of the CA certificates to trust for TLS (implies `--tls`);
    /// for a self-signed server, its certificate.
    #[arg(long, global = true)]
    ca_file: Option<std::path::PathBuf>,
    /// SQLite file for the outbox and inbox position
    /// (default: DATA_DIR/chat/USER.DEVICE.db).
    #[arg(long, global = true)]
    state: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum ChatAction {
    /// Send one message and wait until it is stored (✓).
    Send {
        /// The message text.
        body: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Print incoming events until interrupted (or `--count` messages).
    Listen {
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<usize>,
        /// Mark shown messages as read.
        #[arg(long)]
        read: bool,
    },
}

pub fn run(config: &Local<'_>, args: ChatArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (client, events, token) = connect(config, &args.identity).await?;
        let http = args
            .http
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.http_addr));
        let result = match args.action {
            Some(ChatAction::Listen { json, count, read }) => {
                listen(&client, events, json, count, read).await
            }
            action => match chat_of(args.to, args.group, &http, &token).await {
                Ok(chat) => match action {
                    Some(ChatAction::Send { body, timeout }) => {
                        send_one(&client, events, &chat, &body, Duration::from_secs(timeout)).await
                    }
                    _ => interactive(&client, events, &chat).await,
                },
                Err(e) => Err(e),
            },
        };
        client.close().await;
        result
    })
}

/// Who a conversation is with.
enum Chat {
    Peer(String),
    Group { id: i64, name: String },
}

impl Chat {
    /// How the conversation is introduced.
    fn title(&self) -> String {
        match self {
            Chat::Peer(peer) => format!("chatting with {}", shown(peer)),
            Chat::Group { name, .. } => format!("chatting in the group {}", shown(name)),
        }
    }

    fn has_message(&self, message: &protocol::messages::MessageEvent) -> bool {
        match self {
            Chat::Peer(peer) => message.group.is_none() && message.from == *peer,
            Chat::Group { id, .. } => message.group == Some(*id),
        }
    }

    fn has_ack(&self, ack: &protocol::messages::AckEvent) -> bool {
        match self {
            Chat::Peer(peer) => ack.group.is_none() && ack.to.as_deref() == Some(peer.as_str()),
            Chat::Group { id, .. } => ack.group == Some(*id),
        }
    }

    fn has_receipt(&self, receipt: &protocol::messages::ReceiptEvent) -> bool {
        match self {
            Chat::Peer(peer) => receipt.group.is_none() && receipt.peer.as_deref() == Some(peer.as_str()),
            Chat::Group { id, .. } => receipt.group == Some(*id),
        }
    }

    async fn send(&self, client: &Client, body: &str) -> Result<String, client::ClientError> {
        match self {
            Chat::Peer(peer) => client.send(peer, body).await,
            Chat::Group { id, .. } => client.send_to_group(*id, body).await,
        }
    }

    async fn read(&self, client: &Client, message: &protocol::messages::MessageEvent) -> Result<(), client::ClientError> {
        match self {
            Chat::Peer(peer) => client.read(peer, message.id).await,
            Chat::Group { id, .. } => client.read_group(*id, message.id).await,
        }
    }
}

/// `--to PEER`, or `--group NAME` looked up among my groups over HTTP.
async fn chat_of(
    to: Option<String>,
    group: Option<String>,
    http: &str,
    token: &str,
) -> anyhow::Result<Chat> {
    match (to, group) {
        (Some(peer), _) => Ok(Chat::Peer(peer)),
        (None, Some(name)) => {
            let id = find_group(http, token, &name).await?;
            Ok(Chat::Group { id, name })
        }
        (None, None) => bail!("say who to chat with: --to PEER or --group NAME"),
    }
}

/// The id of my group called `name` (`GET /v1/groups`).
async fn find_group(http: &str, token: &str, name: &str) -> anyhow::Result<i64> {
    let url = format!("{}/v1/groups", http.trim_end_matches('/'));
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("looking up your groups at {url}"))?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("GET {url}: HTTP {status}: {}", shown(&text));
    }
    let groups: protocol::groups::GroupList =
        serde_json::from_str(&text).with_context(|| format!("GET {url} answered {}", shown(&text)))?;
    let matching: Vec<i64> = groups
        .items
        .iter()
        .filter(|group| group.name == name)
        .map(|group| group.id)
        .collect();
    match matching[..] {
        [id] => Ok(id),
        [] => bail!("you are in no group called {:?}", shown(name)),
        _ => bail!(
            "you are in {} groups called {:?} (ids {matching:?})",
            matching.len(),
            shown(name)
        ),
    }
}

async fn connect(
    config: &Local<'_>,
    identity: &Identity,
) -> anyhow::Result<(Client, tokio::sync::mpsc::UnboundedReceiver<AppEvent>, String)> {
    let (user, token) = match (&identity.as_user, &identity.user, &identity.token) {
        (Some(name), _, _) => (name.clone(), (config.mint_token)(name)?),
        (None, Some(user), Some(token)) => (user.clone(), token.clone()),
        _ => bail!("say who you are: --as NAME, or --user NAME --token TOKEN"),
    };
    let tls = match (&identity.ca_file, identity.tls) {
        (Some(path), _) => Some(client::Tls::CaPem(
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        )),
        (None, true) => Some(client::Tls::SystemRoots),
        (None, false) => None,
    };
    let default_server = match tls {
        Some(_) => config.tls_addr,
        None => config.mqtt_addr,
    };
    let server = identity.server.unwrap_or(default_server);
    if tls.is_none() && !server.ip().is_loopback() {
        eprintln!(
            "warning: connecting to {server} without --tls: the token crosses the network in clear"
        );
    }
    let state = identity.state.clone().unwrap_or_else(|| {
        config
            .data_dir
            .join("chat")
            .join(format!("{user}.{}.db", identity.device))
    });
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut settings = client::Config::new(
        server.ip().to_string(),
        server.port(),
        &user,
        token.clone(),
        &identity.device,
        state,
    );
    settings.tls = tls;
    let (client, events) = Client::connect(settings)
        .await
        .with_context(|| format!("connecting to {server} as {user}"))?;
    Ok((client, events, token))
}

async fn send_one(
    client: &Client,
    mut events: tokio::sync::mpsc::UnboundedReceiver<AppEvent>,
    to: &Chat,
    body: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let client_id = to.send(client, body).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .with_context(|| format!("no ✓ for {client_id} within {timeout:?}"))?
            .context("the client stopped")?;
        match event {
            AppEvent::Sent { ack, .. } if ack.client_id == client_id => {
                println!("✓ stored as message {} ({client_id})", ack.id);
                return Ok(());
            }
            AppEvent::Rejected(error) if error.client_id.as_deref() == Some(client_id.as_str()) => {
                bail!("refused: {} ({})", shown(&error.message), error.code)
            }
            _ => {}
        }
    }
}

async fn listen(
    client: &Client,
    mut events: tokio::sync::mpsc::UnboundedReceiver<AppEvent>,
    json: bool,
    count: Option<usize>,
    read: bool,
) -> anyhow::Result<()> {
    let mut messages = 0;
    while let Some(event) = events.recv().await {
        let line = if json {
            shown_json(&event_json(&event).to_string())
        } else {
            event_text(&event)
        };
        if !line.is_empty() {
            println!("{line}");
            std::io::stdout().flush().ok();
        }
        if let AppEvent::Message(message) = &event {
            if read {
                match message.group {
                    Some(group) => client.read_group(group, message.id).await?,
                    None => client.read(&message.from, message.id).await?,
                }
            }
            messages += 1;
            if count.is_some_and(|n| messages >= n) {
                break;
            }
        }
    }
    Ok(())
}

/// One of my messages, as the interactive view tracks it.
struct Mine {
    body: String,
    status: &'static str,
}

async fn interactive(
    client: &Client,
    mut events: tokio::sync::mpsc::UnboundedReceiver<AppEvent>,
    chat: &Chat,
) -> anyhow::Result<()> {
    println!("{}: type a message and press Enter; Ctrl-D quits.", chat.title());
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    // Server id → my message, for receipts (which name a server id).
    let mut sent: BTreeMap<i64, Mine> = BTreeMap::new();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                match line? {
                    Some(text) if text.trim().is_empty() => {}
                    Some(text) => { chat.send(client, text.trim_end()).await?; }
                    None => return Ok(()),
                }
            }
            event = events.recv() => {
                let Some(event) = event else { return Ok(()) };
                match event {
                    AppEvent::Message(message) => {
                        println!("{}", message_line(&message.from, &message.body, message.media.as_ref()));
                        if chat.has_message(&message) {
                            chat.read(client, &message).await?;
                        }
                    }
                    AppEvent::Sent { ack, own } if chat.has_ack(&ack) => {
                        let prefix = if own { "you" } else { "you (other device)" };
                        let body = message_line(prefix, &ack.body, ack.media.as_ref());
                        println!("{body}  ✓");
                        sent.insert(ack.id, Mine { body: message_line("", &ack.body, ack.media.as_ref()), status: "✓" });
                    }
                    AppEvent::Receipt(receipt) if chat.has_receipt(&receipt) => {
                        let status = match receipt.status { ReceiptStatus::Delivered => "✓✓", ReceiptStatus::Read => "✓✓ read" };
                        for (_, mine) in sent.range_mut(..=receipt.up_to) {
                            if mine.status != status && mine.status != "✓✓ read" {
                                mine.status = status;
                                println!("you{}  {status}", mine.body);
                            }
                        }
                    }
                    AppEvent::Rejected(error) => println!("! refused: {} ({})", shown(&error.message), error.code),
                    AppEvent::Group(change) => println!("{}", group_line(&change)),
                    AppEvent::Connection(false) => println!("… connection lost, reconnecting"),
                    AppEvent::ServerFault(fault) => println!("! server fault: {fault}"),
                    _ => {}
                }
            }
        }
    }
}

fn event_json(event: &AppEvent) -> serde_json::Value {
    let (kind, mut value) = match event {
        AppEvent::Message(m) => ("message", serde_json::to_value(m)),
        AppEvent::Sent { ack, .. } => ("sent", serde_json::to_value(ack)),
        AppEvent::Receipt(r) => ("receipt", serde_json::to_value(r)),
        AppEvent::Rejected(e) => ("rejected", serde_json::to_value(e)),
        AppEvent::Star(s) => ("star", serde_json::to_value(s)),
        AppEvent::Timer(t) => ("timer", serde_json::to_value(t)),
        AppEvent::Group(g) => ("group", serde_json::to_value(g)),
        AppEvent::Expired(e) => ("expired", serde_json::to_value(e)),
        AppEvent::Connection(up) => ("connection", Ok(serde_json::json!({ "connected": up }))),
        AppEvent::ServerFault(f) => (
            "server_fault",
            Ok(serde_json::json!({ "fault": f.to_string() })),
        ),
    };
    if let Ok(serde_json::Value::Object(map)) = &mut value {
        map.insert("event".into(), kind.into());
    }
    value.unwrap_or_default()
}

fn event_text(event: &AppEvent) -> String {
    match event {
        AppEvent::Message(m) => match m.group {
            Some(group) => message_line(&format!("{} in group {group}", m.from), &m.body, m.media.as_ref()),
            None => message_line(&m.from, &m.body, m.media.as_ref()),
        },
        AppEvent::Sent { ack, .. } => {
            let to = match (&ack.to, ack.group) {
                (_, Some(group)) => format!("group {group}"),
                (to, None) => to.clone().unwrap_or_default(),
            };
            format!(
                "{}  ✓",
                message_line(&format!("you → {}", shown(&to)), &ack.body, ack.media.as_ref())
            )
        }
        AppEvent::Receipt(r) => {
            let of = match (&r.peer, r.group) {
                (_, Some(group)) => format!("all of group {group}"),
                (peer, None) => shown(peer.as_deref().unwrap_or_default()).into_owned(),
            };
            format!("{of} ≤ {} {:?}", r.up_to, r.status)
        }
        AppEvent::Group(g) => group_line(g),
        AppEvent::Rejected(e) => format!("! refused: {} ({})", shown(&e.message), e.code),
        AppEvent::Star(s) if s.starred => format!("★ starred message {}", s.message_id),
        AppEvent::Star(s) => format!("☆ unstarred message {}", s.message_id),
        AppEvent::Timer(t) if t.seconds == 0 => {
            format!("{} turned disappearing messages off", shown(&t.by))
        }
        AppEvent::Timer(t) => format!(
            "{} set disappearing messages to {} s",
            shown(&t.by),
            t.seconds
        ),
        AppEvent::Expired(e) => format!("message {} disappeared", e.message_id),
        AppEvent::Connection(_) => String::new(),
        AppEvent::ServerFault(fault) => format!("! server fault: {fault}"),
    }
}

/// A group change as one line: `* bob added carol to Lunch`.
fn group_line(event: &protocol::groups::GroupEvent) -> String {
    use protocol::groups::GroupChange;
    let by = event.by.as_deref().map_or(Cow::Borrowed("the server"), shown);
    let user = event.user.as_deref().map_or(Cow::Borrowed("someone"), shown);
    let name = shown(&event.name);
    let what = match event.change {
        GroupChange::Created => format!(
            "{by} created {name} with {}",
            shown(&event.members.as_deref().unwrap_or_default().join(", "))
        ),
        GroupChange::Added => format!("{by} added {user} to {name}"),
        GroupChange::Removed => format!("{by} removed {user} from {name}"),
        GroupChange::Left => format!("{user} left {name}"),
        GroupChange::Promoted => format!("{by} made {user} an admin of {name}"),
        GroupChange::Demoted => format!("{by} made {user} a plain member of {name}"),
        GroupChange::Renamed => format!("{by} renamed the group to {name}"),
        GroupChange::Timer => match event.seconds.unwrap_or(0) {
            0 => format!("{by} turned disappearing messages off in {name}"),
            seconds => format!("{by} set disappearing messages in {name} to {seconds} s"),
        },
    };
    format!("* {what}")
}

/// `FROM: BODY [MIME ID] CAPTION`, every part [`shown`] safely. An empty
/// `from` gives `: BODY…`.
fn message_line(from: &str, body: &str, media: Option<&protocol::messages::MediaRef>) -> String {
    let mut line = format!("{}: {}", shown(from), shown(body));
    if let Some(media) = media {
        line.push_str(&format!(" [{} {}]", shown(&media.mime), shown(&media.id)));
        if !media.caption.is_empty() {
            line.push_str(&format!(" {}", shown(&media.caption)));
        }
    }
    line
}

/// Whether `c` could steer a terminal rather than be read: C0 and C1
/// controls and DEL (escape sequences, `\r` overwriting a line, `\n`
/// faking one), and the bidirectional marks, overrides and isolates, which
/// reorder what is displayed.
fn steers(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character that [`steers`] a terminal written as a
/// visible escape (`\u{1b}`, `\n`), so what others send is shown, never
/// obeyed.
fn shown(text: &str) -> Cow<'_, str> {
    if !text.chars().any(steers) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if steers(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A JSON line with the characters that [`steers`] a terminal written as
/// `\uXXXX` escapes (serde_json escapes C0 controls but not DEL, C1 or the
/// bidirectional controls). They only occur inside strings, where the
/// escape means the same character, so the JSON is unchanged in meaning.
fn shown_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if steers(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped_never_sent_to_the_terminal() {
        assert_eq!(shown("plain text, ünïcode ✓"), "plain text, ünïcode ✓");
        assert_eq!(shown("\x1b[2Jgotcha"), "\\u{1b}[2Jgotcha");
        assert_eq!(shown("ok\nbob: fake line"), "ok\\nbob: fake line");
        assert_eq!(shown("\r\x07\x7f\u{9b}31m"), "\\r\\u{7}\\u{7f}\\u{9b}31m");
        assert_eq!(shown("abc\u{202e}fed"), "abc\\u{202e}fed");
        let media = protocol::messages::MediaRef {
            id: "m1".into(),
            mime: "image/png".into(),
            size: 1,
            caption: "see\x1b]0;title\x07".into(),
        };
        let line = message_line("eve\x1b[1A", "hi\x1b[2J", Some(&media));
        assert!(!line.chars().any(steers), "{line:?}");
        assert_eq!(
            line,
            "eve\\u{1b}[1A: hi\\u{1b}[2J [image/png m1] see\\u{1b}]0;title\\u{7}"
        );
    }

    #[test]
    fn json_lines_escape_what_serde_json_leaves_raw() {
        let json = serde_json::json!({ "body": "a\u{7f}b\u{9b}c\u{202e}d\x1be" }).to_string();
        let line = shown_json(&json);
        assert!(!line.chars().any(steers), "{line:?}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["body"], "a\u{7f}b\u{9b}c\u{202e}d\x1be");
    }
}
