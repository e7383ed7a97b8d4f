//! MQTT 3.1.1 well-formedness rules that rumqttd's codec does not check,
//! applied by the guard to every client's packets (dev-open included).
//!
//! rumqttd already refuses strings that are not UTF-8. What it lets through,
//! and Mosquitto refuses by closing the connection, is checked here: the
//! null character in any string (MQTT-1.5.3-2), empty topics (MQTT-4.7.3-1),
//! wildcards in a topic name (MQTT-3.3.2-2), and misplaced wildcards in a
//! topic filter (MQTT-4.7.1-2, MQTT-4.7.1-3). `mosquitto-compat/` holds a
//! scenario for each.

/// May a client publish to (or leave a will on) this topic name?
pub fn topic_name(topic: &[u8]) -> bool {
    std::str::from_utf8(topic).is_ok_and(|t| string(t) && !t.is_empty() && !t.contains(['+', '#']))
}

/// Is this a well-formed topic filter: not empty, `#` only as the whole
/// last level, `+` only as a whole level?
pub fn topic_filter(filter: &str) -> bool {
    if filter.is_empty() || !string(filter) {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == last,
        "+" => true,
        level => !level.contains(['+', '#']),
    })
}

/// An MQTT UTF-8 string must not contain U+0000.
pub fn string(text: &str) -> bool {
    !text.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_refuse_wildcards_nulls_and_emptiness() {
        assert!(topic_name(b"a/b c/d"));
        assert!(topic_name(b"/"));
        for bad in [&b""[..], b"a/+", b"a/#", b"a\0b", b"\xC0\xAF"] {
            assert!(!topic_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn filters_allow_wildcards_only_as_whole_levels() {
        for good in ["#", "+", "a/#", "a/+/b", "+/+", "/#"] {
            assert!(topic_filter(good), "{good}");
        }
        for bad in ["", "a#", "a/#/b", "a/b+", "+a", "a\0"] {
            assert!(!topic_filter(bad), "{bad}");
        }
    }
}
