//! Scenario files: one declarative step a line.
//!
//! ```text
//! # MQTT-3.1.2-24: keepalive 0 turns the keep-alive mechanism off.
//! connect a id=@a keepalive=0
//! recv a = CONNACK sp=0 rc=0
//! send a publish @/t qos=1 id=7 payload=hi
//! recv a = PUBACK id=7
//! quiet a 500
//! ```
//!
//! Steps (the first word after the verb names the connection):
//! - `open C`: open a TCP connection and send nothing yet.
//! - `connect C [id= clean= keepalive= will= will-payload= will-qos=
//!   will-retain= user= pass= proto= level= flags=]`: open if needed and
//!   send a CONNECT (defaults: clean session, keepalive 60, no will).
//! - `send C PACKET`: `publish TOPIC [qos= id= retain= dup= payload=]`,
//!   `subscribe ID FILTER:QOS...`, `unsubscribe ID FILTER...`,
//!   `puback|pubrec|pubrel|pubcomp ID` (ID may be `last`: the packet id of
//!   the last PUBLISH or PUBREC/PUBREL this connection received),
//!   `pingreq`, `disconnect`, or `raw HEX...`.
//! - `recv C [= EXPECTED]`: record the next packet, or `close`, or
//!   `nothing` after [`crate::play::RECV_DEADLINE`].
//! - `quiet C [MS]`: record whatever arrives within MS (default 500): a
//!   passing scenario records `nothing` here.
//! - `drop C`: close the socket without DISCONNECT (a network failure).
//! - `sleep MS`.
//!
//! In every argument `@` stands for the scenario's name, so client ids and
//! topics never collide between scenarios; received topics are rendered
//! with the name turned back into `@`. Values accept `\xNN` escapes (for
//! invalid UTF-8) and `\s` (a space), and `{N*c}` repeats `c` N times.

use std::time::Duration;

/// A parsed scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// File stem; also what `@` expands to.
    pub name: String,
    /// The leading comment: what the scenario checks and which normative
    /// statement it comes from.
    pub about: String,
    pub steps: Vec<Step>,
}

/// One line of a scenario.
#[derive(Debug, Clone)]
pub enum Step {
    Open(String),
    Connect(String, ConnectSpec),
    Send(String, PacketSpec),
    Recv(String, Option<String>),
    Quiet(String, Duration),
    Drop(String),
    Sleep(Duration),
}

/// What a `connect` step sends.
#[derive(Debug, Clone)]
pub struct ConnectSpec {
    pub client_id: Vec<u8>,
    pub clean: bool,
    pub keepalive: u16,
    pub will: Option<WillSpec>,
    pub user: Option<Vec<u8>>,
    pub pass: Option<Vec<u8>>,
    pub protocol_name: Vec<u8>,
    pub level: u8,
    /// Connect flags to send instead of the ones the fields imply.
    pub flags: Option<u8>,
}

#[derive(Debug, Clone)]
pub struct WillSpec {
    pub topic: Vec<u8>,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
}

/// A packet id, or the one last received on this connection.
#[derive(Debug, Clone, Copy)]
pub enum PacketId {
    Fixed(u16),
    Last,
}

/// What a `send` step sends.
#[derive(Debug, Clone)]
pub enum PacketSpec {
    Publish {
        topic: Vec<u8>,
        qos: u8,
        id: u16,
        retain: bool,
        dup: bool,
        payload: Vec<u8>,
    },
    Subscribe(u16, Vec<(Vec<u8>, u8)>),
    Unsubscribe(u16, Vec<Vec<u8>>),
    /// PUBACK, PUBREC, PUBREL or PUBCOMP: the fixed header byte and the id.
    Ack(u8, PacketId),
    PingReq,
    Disconnect,
    Raw(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
#[error("{scenario}:{line}: {message}")]
pub struct ParseError {
    pub scenario: String,
    pub line: usize,
    pub message: String,
}

impl Scenario {
    /// Parses the text of scenario `name`.
    pub fn parse(name: &str, text: &str) -> Result<Scenario, ParseError> {
        let mut about = Vec::new();
        let mut steps = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if let Some(comment) = line.strip_prefix('#') {
                if steps.is_empty() {
                    about.push(comment.trim().to_owned());
                }
                continue;
            }
            if line.is_empty() {
                continue;
            }
            let step = parse_step(name, line).map_err(|message| ParseError {
                scenario: name.to_owned(),
                line: index + 1,
                message,
            })?;
            steps.push(step);
        }
        if steps.is_empty() {
            return Err(ParseError {
                scenario: name.to_owned(),
                line: 0,
                message: "no steps".into(),
            });
        }
        Ok(Scenario {
            name: name.to_owned(),
            about: about.join(" "),
            steps,
        })
    }
}

fn parse_step(name: &str, line: &str) -> Result<Step, String> {
    // The expectation is kept verbatim: it is compared with a rendering.
    let (line, expected) = match line.split_once(" = ") {
        Some((step, expected)) => (step, Some(expected.trim().to_owned())),
        None => (line, None),
    };
    let expanded = line.replace('@', name);
    let mut words = expanded.split_whitespace();
    let verb = words.next().ok_or("empty step")?;
    let mut conn = || {
        words
            .next()
            .map(str::to_owned)
            .ok_or("missing connection name")
    };
    let step = match verb {
        "open" => Step::Open(conn()?),
        "connect" => {
            let c = conn()?;
            Step::Connect(c, parse_connect(words)?)
        }
        "send" => {
            let c = conn()?;
            Step::Send(c, parse_packet(words)?)
        }
        "recv" => Step::Recv(conn()?, expected.clone()),
        "quiet" => {
            let c = conn()?;
            let ms = words.next().map(parse_num).transpose()?.unwrap_or(500);
            Step::Quiet(c, Duration::from_millis(ms))
        }
        "drop" => Step::Drop(conn()?),
        "sleep" => Step::Sleep(Duration::from_millis(parse_num(
            words.next().ok_or("sleep needs milliseconds")?,
        )?)),
        other => return Err(format!("unknown step {other:?}")),
    };
    if expected.is_some() && !matches!(step, Step::Recv(..)) {
        return Err("only recv takes an expectation".into());
    }
    Ok(step)
}

fn parse_connect<'a>(words: impl Iterator<Item = &'a str>) -> Result<ConnectSpec, String> {
    let mut spec = ConnectSpec {
        client_id: Vec::new(),
        clean: true,
        keepalive: 60,
        will: None,
        user: None,
        pass: None,
        protocol_name: b"MQTT".to_vec(),
        level: 4,
        flags: None,
    };
    let mut will = WillSpec {
        topic: Vec::new(),
        payload: Vec::new(),
        qos: 0,
        retain: false,
    };
    let mut has_will = false;
    for word in words {
        let (key, value) = word
            .split_once('=')
            .ok_or(format!("expected key=value: {word}"))?;
        match key {
            "id" => spec.client_id = unescape(value)?,
            "clean" => spec.clean = parse_bool(value)?,
            "keepalive" => spec.keepalive = parse_num(value)? as u16,
            "user" => spec.user = Some(unescape(value)?),
            "pass" => spec.pass = Some(unescape(value)?),
            "proto" => spec.protocol_name = unescape(value)?,
            "level" => spec.level = parse_num(value)? as u8,
            "flags" => spec.flags = Some(parse_num(value)? as u8),
            "will" => {
                has_will = true;
                will.topic = unescape(value)?;
            }
            "will-payload" => will.payload = unescape(value)?,
            "will-qos" => will.qos = parse_num(value)? as u8,
            "will-retain" => will.retain = parse_bool(value)?,
            _ => return Err(format!("unknown connect field {key}")),
        }
    }
    spec.will = has_will.then_some(will);
    Ok(spec)
}

fn parse_packet<'a>(mut words: impl Iterator<Item = &'a str>) -> Result<PacketSpec, String> {
    let kind = words.next().ok_or("send needs a packet")?;
    let packet = match kind {
        "publish" => {
            let topic = unescape(words.next().ok_or("publish needs a topic")?)?;
            let (mut qos, mut id, mut retain, mut dup, mut payload) = (0, 0, false, false, vec![]);
            for word in words.by_ref() {
                let (key, value) = word
                    .split_once('=')
                    .ok_or(format!("expected key=value: {word}"))?;
                match key {
                    "qos" => qos = parse_num(value)? as u8,
                    "id" => id = parse_num(value)? as u16,
                    "retain" => retain = parse_bool(value)?,
                    "dup" => dup = parse_bool(value)?,
                    "payload" => payload = unescape(value)?,
                    _ => return Err(format!("unknown publish field {key}")),
                }
            }
            PacketSpec::Publish {
                topic,
                qos,
                id,
                retain,
                dup,
                payload,
            }
        }
        "subscribe" => {
            let id = parse_num(words.next().ok_or("subscribe needs an id")?)? as u16;
            let mut filters = Vec::new();
            for word in words.by_ref() {
                let (filter, qos) = word.rsplit_once(':').ok_or("filter:qos expected")?;
                filters.push((unescape(filter)?, parse_num(qos)? as u8));
            }
            PacketSpec::Subscribe(id, filters)
        }
        "unsubscribe" => {
            let id = parse_num(words.next().ok_or("unsubscribe needs an id")?)? as u16;
            let filters = words.by_ref().map(unescape).collect::<Result<_, _>>()?;
            PacketSpec::Unsubscribe(id, filters)
        }
        "puback" | "pubrec" | "pubrel" | "pubcomp" => {
            let header = match kind {
                "puback" => 0x40,
                "pubrec" => 0x50,
                "pubrel" => 0x62,
                _ => 0x70,
            };
            let id = match words.next().ok_or("ack needs an id")? {
                "last" => PacketId::Last,
                n => PacketId::Fixed(parse_num(n)? as u16),
            };
            PacketSpec::Ack(header, id)
        }
        "pingreq" => PacketSpec::PingReq,
        "disconnect" => PacketSpec::Disconnect,
        "raw" => {
            let hex: String = words.by_ref().collect();
            PacketSpec::Raw(parse_hex(&hex)?)
        }
        other => return Err(format!("unknown packet {other:?}")),
    };
    if let Some(extra) = words.next() {
        return Err(format!("unexpected {extra:?}"));
    }
    Ok(packet)
}

fn parse_num(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("not a number: {text}"))
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(format!("expected 0 or 1: {text}")),
    }
}

fn parse_hex(hex: &str) -> Result<Vec<u8>, String> {
    if hex.len() % 2 != 0 {
        return Err(format!("odd number of hex digits: {hex}"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| format!("bad hex: {hex}")))
        .collect()
}

/// Expands `\xNN`, `\s` and `{N*c}` in a value.
fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("\\x") {
            let hex = after.get(..2).ok_or(format!("short escape in {text}"))?;
            out.extend(parse_hex(hex)?);
            rest = &after[2..];
        } else if let Some(after) = rest.strip_prefix("\\s") {
            out.push(b' ');
            rest = after;
        } else if let Some(after) = rest.strip_prefix('{') {
            let (inner, tail) = after
                .split_once('}')
                .ok_or(format!("unclosed {{ in {text}"))?;
            let (count, unit) = inner
                .split_once('*')
                .ok_or(format!("expected {{N*c}} in {text}"))?;
            out.extend(unit.repeat(parse_num(count)? as usize).into_bytes());
            rest = tail;
        } else {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            rest = &rest[c.len_utf8()..];
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_parses_into_steps_with_its_name_expanded() {
        let text = "# what\n# and why\nconnect a id=@a keepalive=0\nsend a publish @/t qos=1 id=7 payload=x\\x00{3*y}\nrecv a = PUBACK id=7\n";
        let scenario = Scenario::parse("s1", text).expect("parses");
        assert_eq!(scenario.about, "what and why");
        let Step::Connect(_, connect) = &scenario.steps[0] else {
            panic!()
        };
        assert_eq!(connect.client_id, b"s1a");
        assert_eq!(connect.keepalive, 0);
        let Step::Send(_, PacketSpec::Publish { topic, payload, .. }) = &scenario.steps[1] else {
            panic!()
        };
        assert_eq!(topic, b"s1/t");
        assert_eq!(payload, b"x\0yyy");
        assert!(
            matches!(&scenario.steps[2], Step::Recv(c, Some(e)) if c == "a" && e == "PUBACK id=7")
        );
    }

    #[test]
    fn a_typo_is_an_error_with_its_line() {
        let error = Scenario::parse("s", "connect a\nsned a pingreq\n").unwrap_err();
        assert_eq!(error.line, 2);
    }
}
