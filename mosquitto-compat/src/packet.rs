//! MQTT 3.1.1 framing for the suite: encoding what a step sends, and
//! rendering what a broker sends back as one stable, readable line.
//!
//! Rendering leaves out what a conforming broker may choose freely: the
//! packet ids of the broker's own QoS 1/2 deliveries are shown as `s1`,
//! `s2`, … in order of first appearance on the connection.

use crate::script::{ConnectSpec, PacketSpec};

/// Encodes a CONNECT.
pub fn connect(spec: &ConnectSpec) -> Vec<u8> {
    let mut body = Vec::new();
    put_bytes(&mut body, &spec.protocol_name);
    body.push(spec.level);
    let mut flags = 0u8;
    if spec.clean {
        flags |= 0x02;
    }
    if let Some(will) = &spec.will {
        flags |= 0x04 | (will.qos << 3);
        if will.retain {
            flags |= 0x20;
        }
    }
    if spec.pass.is_some() {
        flags |= 0x40;
    }
    if spec.user.is_some() {
        flags |= 0x80;
    }
    body.push(spec.flags.unwrap_or(flags));
    body.extend_from_slice(&spec.keepalive.to_be_bytes());
    put_bytes(&mut body, &spec.client_id);
    if let Some(will) = &spec.will {
        put_bytes(&mut body, &will.topic);
        put_bytes(&mut body, &will.payload);
    }
    if let Some(user) = &spec.user {
        put_bytes(&mut body, user);
    }
    if let Some(pass) = &spec.pass {
        put_bytes(&mut body, pass);
    }
    frame(0x10, body)
}

/// Encodes a `send` packet; `last` resolves [`crate::script::PacketId::Last`].
pub fn encode(spec: &PacketSpec, last: u16) -> Vec<u8> {
    match spec {
        PacketSpec::Publish {
            topic,
            qos,
            id,
            retain,
            dup,
            payload,
        } => {
            let header = 0x30 | (u8::from(*dup) << 3) | (qos << 1) | u8::from(*retain);
            let mut body = Vec::new();
            put_bytes(&mut body, topic);
            if *qos > 0 {
                body.extend_from_slice(&id.to_be_bytes());
            }
            body.extend_from_slice(payload);
            frame(header, body)
        }
        PacketSpec::Subscribe(id, filters) => {
            let mut body = id.to_be_bytes().to_vec();
            for (filter, qos) in filters {
                put_bytes(&mut body, filter);
                body.push(*qos);
            }
            frame(0x82, body)
        }
        PacketSpec::Unsubscribe(id, filters) => {
            let mut body = id.to_be_bytes().to_vec();
            for filter in filters {
                put_bytes(&mut body, filter);
            }
            frame(0xA2, body)
        }
        PacketSpec::Ack(header, id) => {
            let id = match id {
                crate::script::PacketId::Fixed(id) => *id,
                crate::script::PacketId::Last => last,
            };
            frame(*header, id.to_be_bytes().to_vec())
        }
        PacketSpec::PingReq => vec![0xC0, 0],
        PacketSpec::Disconnect => vec![0xE0, 0],
        PacketSpec::Raw(bytes) => bytes.clone(),
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Lengths over 65535 wrap on purpose: a scenario may send them.
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn frame(header: u8, body: Vec<u8>) -> Vec<u8> {
    let mut out = vec![header];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend(body);
    out
}

/// Splits one whole packet off the front of `buf`: `Some((header, body,
/// consumed))`, or `None` if more bytes are needed.
pub fn split(buf: &[u8]) -> Option<(u8, &[u8], usize)> {
    let header = *buf.first()?;
    let mut len = 0usize;
    let mut shift = 0;
    let mut at = 1;
    loop {
        let byte = *buf.get(at)?;
        len |= ((byte & 0x7F) as usize) << shift;
        at += 1;
        if byte & 0x80 == 0 || shift >= 21 {
            break;
        }
        shift += 7;
    }
    let body = buf.get(at..at + len)?;
    Some((header, body, at + len))
}

/// Per-connection naming of the broker's own packet ids.
#[derive(Default)]
pub struct Ids {
    seen: Vec<u16>,
    /// The id of the last PUBLISH, PUBREC or PUBREL received.
    pub last: u16,
}

impl Ids {
    fn name(&mut self, id: u16) -> String {
        let position = match self.seen.iter().position(|s| *s == id) {
            Some(p) => p,
            None => {
                self.seen.push(id);
                self.seen.len() - 1
            }
        };
        format!("s{}", position + 1)
    }

    /// A broker id shows as its `sN` name; a client's own shows as is.
    fn show(&self, id: u16) -> String {
        match self.seen.iter().position(|s| *s == id) {
            Some(p) => format!("s{}", p + 1),
            None => id.to_string(),
        }
    }
}

/// Renders a received packet; `name` (the scenario) shows as `@`.
pub fn render(header: u8, body: &[u8], ids: &mut Ids, name: &str) -> String {
    let id_at = |at: usize| {
        body.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).replace(name, "@");
    let kind = header >> 4;
    let rendered = match kind {
        2 if body.len() == 2 => format!("CONNACK sp={} rc={}", body[0], body[1]),
        3 => {
            let qos = (header >> 1) & 3;
            let Some(len) = id_at(0) else {
                return raw(header, body);
            };
            let topic_end = 2 + len as usize;
            let Some(topic) = body.get(2..topic_end) else {
                return raw(header, body);
            };
            let (id, payload_at) = if qos > 0 {
                let Some(id) = id_at(topic_end) else {
                    return raw(header, body);
                };
                ids.last = id;
                (format!(" id={}", ids.name(id)), topic_end + 2)
            } else {
                (String::new(), topic_end)
            };
            format!(
                "PUBLISH {} qos={qos} retain={} dup={}{id} payload={}",
                text(topic),
                header & 1,
                (header >> 3) & 1,
                text(&body[payload_at..])
            )
        }
        4..=7 if body.len() == 2 => {
            let id = id_at(0).unwrap_or_default();
            let label = ["PUBACK", "PUBREC", "PUBREL", "PUBCOMP"][kind as usize - 4];
            if kind == 5 || kind == 6 {
                ids.last = id;
            }
            let flags = if header & 0x0F != [0, 0, 2, 0][kind as usize - 4] {
                format!(" flags={:#x}", header & 0x0F)
            } else {
                String::new()
            };
            format!("{label} id={}{flags}", ids.show(id))
        }
        9 if body.len() >= 2 => {
            let codes: Vec<String> = body[2..].iter().map(|c| format!("{c:#04x}")).collect();
            format!(
                "SUBACK id={} codes={}",
                ids.show(id_at(0).unwrap_or_default()),
                codes.join(",")
            )
        }
        11 if body.len() == 2 => format!("UNSUBACK id={}", ids.show(id_at(0).unwrap_or_default())),
        13 if body.is_empty() => "PINGRESP".to_owned(),
        _ => return raw(header, body),
    };
    rendered
}

fn raw(header: u8, body: &[u8]) -> String {
    let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
    format!("BYTES {header:02x} {hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_renders_with_the_broker_id_named_and_the_scenario_folded() {
        let packet = encode(
            &PacketSpec::Publish {
                topic: b"sc/t".to_vec(),
                qos: 1,
                id: 300,
                retain: true,
                dup: false,
                payload: b"hi".to_vec(),
            },
            0,
        );
        let (header, body, used) = split(&packet).expect("whole");
        assert_eq!(used, packet.len());
        let mut ids = Ids::default();
        assert_eq!(
            render(header, body, &mut ids, "sc"),
            "PUBLISH @/t qos=1 retain=1 dup=0 id=s1 payload=hi"
        );
        assert_eq!(ids.last, 300);
        assert_eq!(render(0x62, &[1, 44], &mut ids, "sc"), "PUBREL id=s1");
    }

    #[test]
    fn long_remaining_lengths_frame_and_split() {
        let packet = frame(0x30, vec![0; 20_000]);
        assert_eq!(split(&packet).map(|(_, b, _)| b.len()), Some(20_000));
        assert!(split(&packet[..100]).is_none());
    }
}
