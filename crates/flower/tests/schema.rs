//! The vendored `.proto` text must be flwr 1.40.0's schema exactly: what protox compiles from
//! it (at build time) is compared with the descriptors embedded in the flwr==1.40.0 wheel
//! (`proto/flwr-descriptors.binpb`, written by `proto/regenerate.py`).

use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};

/// Drops what only the compiler adds (JSON names, source positions, empty option blocks),
/// keeping the schema: messages, fields (names, numbers, labels, types, oneofs, proto3
/// `optional`), enums, services.
fn schema(mut f: FileDescriptorProto) -> FileDescriptorProto {
    fn strip(m: &mut DescriptorProto) {
        for f in &mut m.field {
            f.json_name = None;
        }
        m.nested_type.iter_mut().for_each(strip);
    }
    f.source_code_info = None;
    f.options = None;
    f.message_type.iter_mut().for_each(strip);
    for m in f.service.iter_mut().flat_map(|s| s.method.iter_mut()) {
        if m.options == Some(Default::default()) {
            m.options = None;
        }
    }
    f
}

#[test]
fn vendored_protos_match_the_flwr_wheel() {
    let compiled = FileDescriptorSet::decode(&include_bytes!(concat!(env!("OUT_DIR"), "/flwr.fds.bin"))[..]).unwrap();
    let wheel = FileDescriptorSet::decode(&include_bytes!("../proto/flwr-descriptors.binpb")[..]).unwrap();
    assert_eq!(wheel.file.len(), 9);
    for want in wheel.file {
        let name = want.name().to_string();
        let got = compiled
            .file
            .iter()
            .find(|f| f.name() == name)
            .unwrap_or_else(|| panic!("{name} is not vendored"))
            .clone();
        assert_eq!(schema(got), schema(want), "{name} differs from flwr 1.40.0");
    }
}

#[test]
fn fields_added_after_the_old_protos_are_there() {
    use privpkt_flower::proto;
    // PushObjectRequest.session_id (5) and Metadata.src/dst_task_id (10, 11): encode and
    // check the wire tags.
    let push = proto::PushObjectRequest {
        session_id: "s".into(),
        ..Default::default()
    };
    assert_eq!(push.encode_to_vec(), [5 << 3 | 2, 1, b's']);
    let md = proto::Metadata {
        src_task_id: Some(0),
        dst_task_id: Some(1),
        ..Default::default()
    };
    assert_eq!(md.encode_to_vec(), [10 << 3, 0, 11 << 3, 1]);
}
