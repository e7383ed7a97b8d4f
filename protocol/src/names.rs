//! User names, device names and MQTT client ids.
//!
//! A user name is 3–32 characters of `[a-z0-9_]`. An MQTT client id is either
//! the user name alone or `NAME.DEVICE`, where the device is 1–32 characters
//! of `[A-Za-z0-9_-]`. Because neither part may contain `/`, `+`, `#` or `$`,
//! a valid client id can never trip rumqttd's client-id check (see
//! DESIGN.md, "Lockup bug").

use std::fmt;

/// Shortest allowed user name, in characters.
pub const USER_NAME_MIN: usize = 3;
/// Longest allowed user name, in characters.
pub const USER_NAME_MAX: usize = 32;
/// Longest allowed device name, in characters.
pub const DEVICE_MAX: usize = 32;
/// Shortest allowed password, in bytes.
pub const PASSWORD_MIN: usize = 8;
/// Longest allowed password, in bytes. Bounds the work argon2 is asked to do.
pub const PASSWORD_MAX: usize = 256;

/// Why a name, client id or password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("user names are {USER_NAME_MIN}-{USER_NAME_MAX} characters of a-z, 0-9 and _")]
    UserName,
    #[error("client ids are NAME or NAME.DEVICE, the device being 1-{DEVICE_MAX} characters of A-Z, a-z, 0-9, _ and -")]
    ClientId,
    #[error("passwords are {PASSWORD_MIN}-{PASSWORD_MAX} bytes long")]
    PasswordLength,
}

/// A validated user name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(String);

impl UserName {
    /// Validates `name` as a user name.
    pub fn parse(name: &str) -> Result<UserName, NameError> {
        let length_ok = (USER_NAME_MIN..=USER_NAME_MAX).contains(&name.len());
        let chars_ok = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if length_ok && chars_ok {
            Ok(UserName(name.to_owned()))
        } else {
            Err(NameError::UserName)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated MQTT client id: the user it belongs to and an optional device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId {
    /// The user that owns this client.
    pub user: UserName,
    /// The device part after the dot, if any.
    pub device: Option<String>,
}

impl ClientId {
    /// Parses `NAME` or `NAME.DEVICE`.
    pub fn parse(client_id: &str) -> Result<ClientId, NameError> {
        let (user, device) = match client_id.split_once('.') {
            Some((user, device)) => (user, Some(device)),
            None => (client_id, None),
        };
        let user = UserName::parse(user).map_err(|_| NameError::ClientId)?;
        if device.is_some_and(|device| !valid_device(device)) {
            return Err(NameError::ClientId);
        }
        Ok(ClientId {
            user,
            device: device.map(str::to_owned),
        })
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.device {
            Some(device) => write!(f, "{}.{device}", self.user),
            None => write!(f, "{}", self.user),
        }
    }
}

/// Is `device` a device name: 1–[`DEVICE_MAX`] characters of
/// `[A-Za-z0-9_-]`? The one rule for the device part of client ids and the
/// `device` field of requests.
pub fn valid_device(device: &str) -> bool {
    (1..=DEVICE_MAX).contains(&device.len())
        && device
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Deserializes a request's `device` field: empty (a bare `NAME` client)
/// or a [`valid_device`]. Anything else refuses the whole request, so an
/// unbounded string never reaches the store.
pub fn deserialize_device<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let device = <String as serde::Deserialize>::deserialize(d)?;
    if device.is_empty() || valid_device(&device) {
        Ok(device)
    } else {
        Err(serde::de::Error::custom(format!(
            "device must be empty or 1-{DEVICE_MAX} characters of A-Z, a-z, 0-9, _ and -"
        )))
    }
}

/// Checks a password's length (the only rule: strength is the user's choice).
pub fn check_password(password: &str) -> Result<(), NameError> {
    if (PASSWORD_MIN..=PASSWORD_MAX).contains(&password.len()) {
        Ok(())
    } else {
        Err(NameError::PasswordLength)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_short_lowercase_words() {
        for good in ["bob", "alice_2", "a_b_c", &"x".repeat(32)] {
            assert!(UserName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "ab",
            "Bob",
            "bob!",
            "bo b",
            "böb",
            "a/b",
            &"x".repeat(33),
        ] {
            assert_eq!(UserName::parse(bad), Err(NameError::UserName), "{bad}");
        }
    }

    #[test]
    fn client_ids_are_name_or_name_dot_device() {
        let id = ClientId::parse("alice.phone-1").unwrap();
        assert_eq!(id.user.as_str(), "alice");
        assert_eq!(id.device.as_deref(), Some("phone-1"));
        assert_eq!(id.to_string(), "alice.phone-1");
        assert_eq!(ClientId::parse("alice").unwrap().device, None);
        for bad in [
            "",
            "a/b",
            "alice/",
            "alice.",
            "alice.a.b",
            "alice.+",
            "alice.#",
            "$sys",
            "al",
            ".dev",
        ] {
            assert_eq!(ClientId::parse(bad), Err(NameError::ClientId), "{bad}");
        }
    }

    #[test]
    fn passwords_have_bounded_length() {
        assert!(check_password("12345678").is_ok());
        assert_eq!(check_password("1234567"), Err(NameError::PasswordLength));
        assert_eq!(
            check_password(&"x".repeat(257)),
            Err(NameError::PasswordLength)
        );
    }
}
