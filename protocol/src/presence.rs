//! Presence, last seen, privacy and typing.
//!
//! The server publishes each user's presence, retained, on
//! `presence/{user}` as a [`Presence`]. Who may see it follows the user's
//! [`Privacy`] with WhatsApp's reciprocity ([`may_see_last_seen`]); the
//! broker's guard applies that rule to every delivery of a presence
//! message, so a viewer who may not see it receives [`Presence::hidden`]
//! instead, whatever topic filter or retained message brought it.

use serde::{Deserialize, Serialize};

/// Who may see a user's last seen and online status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Privacy {
    /// Any user.
    Everyone,
    /// Users this user has written to (sent at least one message). Being
    /// written to does not make someone a contact, so a stranger cannot
    /// become one by sending an unsolicited message.
    Contacts,
    /// No one.
    Nobody,
}

impl Privacy {
    pub fn as_str(self) -> &'static str {
        match self {
            Privacy::Everyone => "everyone",
            Privacy::Contacts => "contacts",
            Privacy::Nobody => "nobody",
        }
    }

    pub fn parse(value: &str) -> Option<Privacy> {
        [Privacy::Everyone, Privacy::Contacts, Privacy::Nobody]
            .into_iter()
            .find(|p| p.as_str() == value)
    }

    /// Does this setting share with someone who is (or is not) a contact?
    fn shares_with(self, contact: bool) -> bool {
        match self {
            Privacy::Everyone => true,
            Privacy::Contacts => contact,
            Privacy::Nobody => false,
        }
    }
}

/// Who has written to whom between a viewer and a target: a user's
/// contacts are the people they have written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Correspondence {
    /// The target sent the viewer at least one message: the viewer is the
    /// target's contact.
    pub target_wrote_to_viewer: bool,
    /// The viewer sent the target at least one message: the target is the
    /// viewer's contact.
    pub viewer_wrote_to_target: bool,
}

/// May `viewer` see `target`'s presence? A user always sees their own.
/// Otherwise the target must share with the viewer and, by reciprocity,
/// the viewer must share with the target: hide yours from someone and you
/// cannot see theirs.
pub fn may_see_last_seen(
    viewer_is_target: bool,
    viewer: Privacy,
    target: Privacy,
    contacts: Correspondence,
) -> bool {
    viewer_is_target
        || (target.shares_with(contacts.target_wrote_to_viewer)
            && viewer.shares_with(contacts.viewer_wrote_to_target))
}

/// The payload of `presence/{user}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Presence {
    /// Connected on at least one device (absent when hidden).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    /// When the last device went offline, Unix ms (absent when hidden or
    /// never seen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<i64>,
    /// True when the viewer may not see this user's presence.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
}

impl Presence {
    pub fn visible(online: bool, last_seen: Option<i64>) -> Presence {
        Presence {
            online: Some(online),
            last_seen,
            hidden: false,
        }
    }

    /// What a viewer who may not see it gets: no status, no timestamp.
    pub fn hidden() -> Presence {
        Presence {
            online: None,
            last_seen: None,
            hidden: true,
        }
    }
}

/// `u/{me}/presence`: a device says it is in the foreground or not (the
/// last-will message should be `{"state":"offline"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceRequest {
    pub state: PresenceState,
    /// The device part of the client id (empty for a bare `NAME`); same
    /// rule as in client ids.
    #[serde(default, deserialize_with = "crate::names::deserialize_device")]
    pub device: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceState {
    Online,
    Offline,
}

/// `u/{me}/typing`: I am typing to `to` or in `group` (or stopped);
/// exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<crate::messages::GroupId>,
    pub state: TypingState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypingState {
    Typing,
    Paused,
}

/// What `u/{peer}/live` carries (QoS 0, never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    Typing {
        from: String,
        /// Set when `from` is typing in this group (to its online members).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<crate::messages::GroupId>,
        state: TypingState,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use Privacy::*;

    #[test]
    fn last_seen_visibility_follows_privacy_and_reciprocity() {
        // (viewer's setting, target's setting, target wrote to viewer,
        // viewer wrote to target) → visible?
        let cases = [
            (Everyone, Everyone, false, false, true),
            (Everyone, Contacts, false, false, false),
            (Everyone, Contacts, true, false, true),
            (Everyone, Nobody, true, true, false),
            // Writing to someone does not make you their contact.
            (Everyone, Contacts, false, true, false),
            // Reciprocity: hide yours, see no one's.
            (Nobody, Everyone, true, true, false),
            (Contacts, Everyone, false, false, false),
            (Contacts, Everyone, true, false, false),
            (Contacts, Everyone, false, true, true),
            (Contacts, Contacts, true, true, true),
            (Contacts, Contacts, true, false, false),
        ];
        for (viewer, target, target_wrote, viewer_wrote, visible) in cases {
            let contacts = Correspondence {
                target_wrote_to_viewer: target_wrote,
                viewer_wrote_to_target: viewer_wrote,
            };
            assert_eq!(
                may_see_last_seen(false, viewer, target, contacts),
                visible,
                "{viewer:?} → {target:?}, {contacts:?}"
            );
        }
        assert!(
            may_see_last_seen(true, Nobody, Nobody, Correspondence::default()),
            "everyone sees their own"
        );
    }

    #[test]
    fn hidden_presence_carries_no_status_or_time() {
        assert_eq!(
            serde_json::to_string(&Presence::hidden()).unwrap(),
            r#"{"hidden":true}"#
        );
        assert_eq!(
            serde_json::to_string(&Presence::visible(false, Some(5))).unwrap(),
            r#"{"online":false,"last_seen":5}"#
        );
        assert_eq!(Privacy::parse("contacts"), Some(Contacts));
        assert_eq!(Privacy::parse("friends"), None);
    }
}
