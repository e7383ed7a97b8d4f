//! Error codes shared by HTTP responses and MQTT error events.
//!
//! Every refusal names one of these codes, so clients can branch on a stable
//! string while the message stays free for humans.

use std::fmt;

/// A stable, machine-readable reason for a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request body or a field in it is malformed.
    BadRequest,
    /// A user name does not follow the naming rule.
    InvalidName,
    /// A password is too short or too long.
    InvalidPassword,
    /// The user name is already registered.
    NameTaken,
    /// Wrong name or password, or a missing, wrong or expired token.
    Unauthorized,
    /// The caller may not touch this resource.
    Forbidden,
    /// No such resource (or the caller may not know that it exists).
    NotFound,
    /// The request body is larger than the limit.
    TooLarge,
    /// The server failed; the request may be retried.
    Internal,
    /// The server is starting or stopping.
    Unavailable,
    /// An MQTT payload that is not the JSON object its topic expects.
    MalformedJson,
    /// A `send` without a client message id.
    MissingId,
    /// A client message id that is empty, too long or has odd characters.
    InvalidId,
    /// A `send` to a user that does not exist.
    UnknownRecipient,
    /// A `send` with an empty body.
    EmptyBody,
    /// A `send` whose body is over the limit.
    BodyTooLarge,
    /// Too many attempts; wait and retry.
    RateLimited,
    /// A `send` naming media that does not exist or is not the sender's
    /// (the two are not told apart).
    UnknownMedia,
    /// An upload whose content type is not in the allowed list.
    UnsupportedMediaType,
    /// A `Range` header that selects no byte of the media.
    RangeNotSatisfiable,
    /// An HTTP route called with a method it does not serve.
    MethodNotAllowed,
    /// An image no thumbnail can be made of: over the pixel or byte limit
    /// of thumbnails, or not decodable. Asking again gets the same answer.
    UnprocessableImage,
    /// A per-user quota is used up (pending uploads); it frees up as the
    /// user's uploads are sent in messages or cleaned up.
    QuotaExceeded,
    /// A chat setting (the disappearing timer) for a chat that does not
    /// exist yet: no message has been exchanged with that user.
    NoChat,
    /// A well-formed request the server could not apply (the database
    /// refused it every time); it is kept for operators. Do not resend.
    Unprocessable,
    /// A group request (send, read, change, HTTP read) from someone who is
    /// not a member of the group, or for a group that does not exist: the
    /// two are not told apart.
    NotAMember,
    /// A group change only the group's admins may make.
    NotAdmin,
    /// Adding members would take the group over its member limit.
    GroupFull,
}

impl ErrorCode {
    /// Every code, for docs and tests.
    pub const ALL: [ErrorCode; 28] = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidName,
        ErrorCode::InvalidPassword,
        ErrorCode::NameTaken,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::TooLarge,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::MalformedJson,
        ErrorCode::MissingId,
        ErrorCode::InvalidId,
        ErrorCode::UnknownRecipient,
        ErrorCode::EmptyBody,
        ErrorCode::BodyTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::UnknownMedia,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::RangeNotSatisfiable,
        ErrorCode::MethodNotAllowed,
        ErrorCode::UnprocessableImage,
        ErrorCode::QuotaExceeded,
        ErrorCode::NoChat,
        ErrorCode::Unprocessable,
        ErrorCode::NotAMember,
        ErrorCode::NotAdmin,
        ErrorCode::GroupFull,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::InvalidPassword => "invalid_password",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::MissingId => "missing_id",
            ErrorCode::InvalidId => "invalid_id",
            ErrorCode::UnknownRecipient => "unknown_recipient",
            ErrorCode::EmptyBody => "empty_body",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UnknownMedia => "unknown_media",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::RangeNotSatisfiable => "range_not_satisfiable",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::UnprocessableImage => "unprocessable_image",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::NoChat => "no_chat",
            ErrorCode::Unprocessable => "unprocessable",
            ErrorCode::NotAMember => "not_a_member",
            ErrorCode::NotAdmin => "not_admin",
            ErrorCode::GroupFull => "group_full",
        }
    }

    /// Whether a request refused with this code may succeed if sent again
    /// unchanged, later: the SDK keeps such a send and resends it.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Internal | ErrorCode::Unavailable | ErrorCode::RateLimited
        )
    }

    /// The HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest
            | ErrorCode::InvalidName
            | ErrorCode::InvalidPassword
            | ErrorCode::MalformedJson
            | ErrorCode::MissingId
            | ErrorCode::InvalidId
            | ErrorCode::EmptyBody => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden | ErrorCode::NotAdmin => 403,
            ErrorCode::NotFound
            | ErrorCode::UnknownRecipient
            | ErrorCode::UnknownMedia
            | ErrorCode::NotAMember => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::NameTaken => 409,
            ErrorCode::TooLarge | ErrorCode::BodyTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::RangeNotSatisfiable => 416,
            ErrorCode::RateLimited | ErrorCode::QuotaExceeded => 429,
            ErrorCode::NoChat | ErrorCode::GroupFull => 409,
            ErrorCode::UnprocessableImage | ErrorCode::Unprocessable => 422,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }
}

impl std::str::FromStr for ErrorCode {
    type Err = ();

    fn from_str(code: &str) -> Result<ErrorCode, ()> {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == code)
            .ok_or(())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ErrorCode, D::Error> {
        let code = String::deserialize(d)?;
        code.parse()
            .map_err(|_| serde::de::Error::custom(format!("unknown error code {code:?}")))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
