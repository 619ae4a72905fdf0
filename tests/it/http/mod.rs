//! The HTTP API and SAML single sign-on (`src/http`), over a real HTTP client.
mod api;
mod saml;
