//! The gRPC edge: generated code, handlers, proto ↔ domain conversion, credentials and
//! error mapping.

mod convert;
mod fair_share;
mod layers;
mod observe;
mod status;
mod tokens;
mod users;

pub use fair_share::FairShareLayer;
pub use layers::{AccessLogLayer, AuthLayer, DeadlineLayer, InFlightLimitLayer, RequestId};
pub use observe::ObserveLayer;
pub use tokens::TokenApi;
pub use users::UserApi;

/// Code generated from `proto/usermgmt/v1/`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("usermgmt.v1");

    /// The encoded descriptors of the contract, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/usermgmt_descriptor.bin"));
}
