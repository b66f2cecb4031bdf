//! Eddy's integration tests: one binary, against real components built from
//! `examples/` and `tests/fixtures/`, and the real `eddy` binary.

mod support;

mod api;
mod auth;
mod bad_requests;
mod budget;
mod canary;
mod changelog;
mod cluster;
mod compat;
mod dashboard;
mod event_time;
mod golden;
mod harness;
mod history;
mod hostile;
mod hostile_savepoints;
mod isolation;
mod joins;
mod kafka;
mod kafka_joins;
mod kafka_recovery;
mod languages;
mod latency;
mod layers;
mod limits;
mod openapi_fuzz;
mod probation;
mod refused_restores;
mod repartitioned_inputs;
mod run_cli;
mod runtime;
mod savepoint;
mod server;
mod setup;
mod shadow;
mod state_queries;
mod status_counts;
mod task;
mod typed_config;
mod upgrade;
mod window_joins;
