//! usermgmt: a gRPC service that manages the users of a cloud account.

pub mod app;
pub mod clock;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod health;
pub mod metrics;
pub mod notifier;
pub mod service;
pub mod store;
pub mod telemetry;
