//! The OpenAPI document of the HTTP API, served at `/v1/openapi.json`.
//!
//! Paths come from the `#[utoipa::path]` annotation on each handler, and
//! the router is built from those same annotations ([`super::router`]), so
//! a route cannot exist without being documented.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document's fixed parts; paths are added by the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "bluetick HTTP API",
        description = "Accounts, history, stars, search and operations. Chat itself \
                       runs over MQTT; see docs/protocol.md. Every refusal is \
                       `{\"error\":{\"code\",\"message\"}}`; every list is a page \
                       `{\"items\",\"next\"}` taking `before` and `limit`.",
    ),
    paths(document),
    modifiers(&BearerAuth),
    tags(
        (name = "accounts", description = "Registration and tokens"),
        (name = "messages", description = "Sending over HTTP"),
        (name = "groups", description = "Creating, changing and listing groups"),
        (name = "history", description = "Chats, history and search"),
        (name = "stars", description = "Starred messages"),
        (name = "media", description = "Media uploads and downloads"),
        (name = "presence", description = "Presence and privacy"),
        (name = "operations", description = "Health and readiness (metrics are on the private metrics listener)"),
        (name = "web", description = "What the web client served at / needs to connect"),
    ),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A token from `POST /v1/tokens`"))
                    .build(),
            ),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 JSON", content_type = "application/json")))]
pub async fn document(State(json): State<Arc<String>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.as_str().to_owned(),
    )
}
