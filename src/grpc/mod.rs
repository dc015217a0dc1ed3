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
pub use observe::{CALL_SPAN, ObserveLayer};
pub use tokens::TokenApi;
pub use users::UserApi;

/// Code generated from `proto/usermgmt/v1/`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("usermgmt.v1");

    /// The encoded descriptors of the contract, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/usermgmt_descriptor.bin"));

    /// The encoded descriptors of `proto/google/rpc/` (the error model and its details), for
    /// server reflection: grpcurl decodes error details and batch results with them.
    pub const GOOGLE_RPC_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/google_rpc_descriptor.bin"));
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::{FileDescriptorProto, FileDescriptorSet};

    const VENDORED: &[u8] = super::pb::GOOGLE_RPC_DESCRIPTOR_SET;

    fn files(encoded: &[u8]) -> Vec<FileDescriptorProto> {
        FileDescriptorSet::decode(encoded).unwrap().file
    }

    /// The copies clients generate from, which reflection serves, are the error model the
    /// service encodes with (tonic-types', which names its files without the `google/rpc/`
    /// directory), message for message.
    #[test]
    fn the_vendored_google_rpc_protos_are_the_ones_served() {
        let served = files(tonic_types::pb::FILE_DESCRIPTOR_SET);
        for (name, served_name) in [
            ("google/rpc/status.proto", "status.proto"),
            ("google/rpc/error_details.proto", "error_details.proto"),
        ] {
            let vendored = files(VENDORED)
                .into_iter()
                .find(|file| file.name() == name)
                .unwrap_or_else(|| panic!("{name} is not vendored"));
            let served = served
                .iter()
                .find(|file| file.name() == served_name)
                .unwrap_or_else(|| panic!("{served_name} is not served"));
            assert_eq!(vendored.package, served.package, "{name}");
            assert_eq!(vendored.dependency, served.dependency, "{name}");
            assert_eq!(vendored.message_type, served.message_type, "{name}");
            assert_eq!(vendored.enum_type, served.enum_type, "{name}");
        }
    }

    /// The contract's import of google.rpc.Status is the vendored file, so reflection holds
    /// one definition of each google.rpc message.
    #[test]
    fn the_contract_imports_the_vendored_status() {
        let ours = files(super::pb::FILE_DESCRIPTOR_SET);
        let status = ours
            .iter()
            .find(|file| file.name() == "google/rpc/status.proto")
            .expect("the contract imports google/rpc/status.proto");
        let vendored = files(VENDORED);
        assert!(vendored.contains(status));
    }
}
