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

#[cfg(test)]
mod tests {
    use prost::Message;
    use prost_types::{FileDescriptorProto, FileDescriptorSet};

    /// `proto/google/rpc/*.proto`, compiled by the build script.
    const VENDORED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/google_rpc_descriptor.bin"));

    fn files(encoded: &[u8]) -> Vec<FileDescriptorProto> {
        FileDescriptorSet::decode(encoded).unwrap().file
    }

    /// The copies clients generate from are the error model the service answers with and
    /// serves by reflection (from tonic-types, which names its files without the
    /// `google/rpc/` directory), message for message.
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

    /// Our contract does not import google.rpc, so reflection holds one definition of each
    /// google.rpc message: tonic-types'.
    #[test]
    fn the_contract_does_not_carry_its_own_copy_of_google_rpc() {
        let ours = files(super::pb::FILE_DESCRIPTOR_SET);
        let names: Vec<&str> = ours.iter().map(|file| file.name()).collect();
        assert!(
            ours.iter().all(|file| file.package() != "google.rpc"),
            "{names:?}"
        );
    }
}
