//! userkeys: every key that opens a Moodle account, who used it, from where — and revoke it.
//!
//! Layers: `domain` (pure rules), `keys` (key types, registry, issue/revoke), `usage`
//! (recording and summarising use), `db` (diesel over SQLite or PostgreSQL), `web` (pages),
//! `moodle` (Moodle's protocol). `app` wires them together.

pub mod accounts;
pub mod app;
pub mod config;
pub mod core;
pub mod db;
pub mod domain;
pub mod http;
pub mod keys;
pub mod mail;
pub mod moodle;
pub mod setup;
pub mod thread_stripe;
pub mod usage;
pub mod web;
