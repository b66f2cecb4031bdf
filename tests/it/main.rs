//! Eddy's integration tests: one binary, against real components built from
//! `examples/` and `tests/fixtures/`, and the real `eddy` binary.

mod support;

mod api;
mod changelog;
mod cluster;
mod event_time;
mod golden;
mod kafka;
mod languages;
mod run_cli;
mod runtime;
mod savepoint;
mod server;
mod task;
mod upgrade;
