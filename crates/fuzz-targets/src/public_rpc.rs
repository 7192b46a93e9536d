//! Every public gRPC method, through the gateway's real gRPC server on a
//! loopback port (its whole layer stack, tonic's protobuf decoding, the
//! API key interceptor, the handler, the call to business and back).
//!
//! The input's first byte picks the method, the second the API key, the
//! rest is sent as the request message as is (so most inputs are not valid
//! protobuf). For any input: no panic, and an answer a caller can act on —
//! OK or a status that names their mistake (INVALID_ARGUMENT, NOT_FOUND,
//! UNAUTHENTICATED ...) with a message; never UNKNOWN, INTERNAL,
//! UNAVAILABLE or DATA_LOSS, which would say the edge broke.

use std::sync::OnceLock;

use bytes::{Buf as _, BufMut as _, Bytes};
use prost::Message as _;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::edge::{ACME_KEY, edge};

const METHODS: [&str; 9] = [
    "CreateAccount",
    "GetAccount",
    "Deposit",
    "Withdraw",
    "Transfer",
    "GetTransfer",
    "ListAccounts",
    "ListEntries",
    "CloseAccount",
];

const KEYS: [Option<&str>; 4] = [
    Some(ACME_KEY),
    Some("dev-key-globex"),
    None,
    Some("not-a-key"),
];

/// Codes that say what the caller got wrong, or that it worked.
const CALLER_CODES: [Code; 9] = [
    Code::Ok,
    Code::InvalidArgument,
    Code::NotFound,
    Code::AlreadyExists,
    Code::FailedPrecondition,
    Code::Unauthenticated,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::OutOfRange,
];

pub fn run(data: &[u8]) {
    let [method, key, message @ ..] = data else {
        return;
    };
    let method = METHODS[usize::from(*method) % METHODS.len()];
    let key = KEYS[usize::from(*key) % KEYS.len()];
    let edge = edge();
    let result = edge
        .runtime
        .block_on(call(method, key, Bytes::copy_from_slice(message)));
    let status = match result {
        Ok(_) => return,
        Err(status) => status,
    };
    assert!(
        CALLER_CODES.contains(&status.code()),
        "{method}: {:?} for a request the caller sent: {}",
        status.code(),
        status.message()
    );
    assert!(
        !status.message().is_empty(),
        "{method}: {:?} without a message",
        status.code()
    );
}

fn channel() -> Channel {
    static CHANNEL: OnceLock<Channel> = OnceLock::new();
    CHANNEL
        .get_or_init(|| {
            let edge = edge();
            let _inside = edge.runtime.enter();
            match Endpoint::from_shared(format!("http://{}", edge.grpc)) {
                Ok(endpoint) => endpoint.connect_lazy(),
                Err(e) => panic!("the edge's address is not a URI: {e}"),
            }
        })
        .clone()
}

/// Sends `message` as is to `/anatomy.gateway.v1.Ledger/{method}`.
async fn call(method: &str, key: Option<&str>, message: Bytes) -> Result<Bytes, Status> {
    let path = format!("/anatomy.gateway.v1.Ledger/{method}")
        .parse()
        .map_err(|e| Status::internal(format!("bad path: {e}")))?;
    let mut request = tonic::Request::new(message);
    if let Some(key) = key {
        let value = format!("Bearer {key}")
            .parse()
            .map_err(|e| Status::internal(format!("bad key: {e}")))?;
        request.metadata_mut().insert("authorization", value);
    }
    let mut grpc = tonic::client::Grpc::new(channel());
    grpc.ready()
        .await
        .map_err(|e| Status::internal(format!("the channel failed: {e}")))?;
    grpc.unary(request, path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// Sends and receives messages as raw bytes: no protobuf on this side.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// A valid request for every method, as tenant acme; and a few that are
/// not protobuf at all.
pub fn seeds() -> Vec<Vec<u8>> {
    use gateway_api::v1 as api;
    let messages: Vec<Vec<u8>> = vec![
        api::CreateAccountRequest {
            request_id: "r1".into(),
            account_id: "alice".into(),
        }
        .encode_to_vec(),
        api::GetAccountRequest {
            account_id: "alice".into(),
        }
        .encode_to_vec(),
        api::DepositRequest {
            request_id: "d1".into(),
            account_id: "alice".into(),
            amount: 100,
        }
        .encode_to_vec(),
        api::WithdrawRequest {
            request_id: "w1".into(),
            account_id: "alice".into(),
            amount: i64::MIN,
        }
        .encode_to_vec(),
        api::TransferRequest {
            request_id: "t1".into(),
            from_account_id: "alice".into(),
            to_account_id: "bob".into(),
            amount: 5,
        }
        .encode_to_vec(),
        api::GetTransferRequest {
            transfer_id: "t1".into(),
        }
        .encode_to_vec(),
        api::ListAccountsRequest {
            page_size: -1,
            page_token: "\u{0}forged".into(),
        }
        .encode_to_vec(),
        api::ListEntriesRequest {
            account_id: "alice".into(),
            page_size: 1000,
            page_token: String::new(),
        }
        .encode_to_vec(),
        api::CloseAccountRequest {
            request_id: "c1".into(),
            account_id: "alice".into(),
        }
        .encode_to_vec(),
    ];
    let mut seeds: Vec<Vec<u8>> = messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| [vec![i as u8, 0], m].concat())
        .collect();
    seeds.push(vec![0, 0, 0xff, 0xff, 0xff]);
    seeds.push(vec![1, 2, 0x0a, 0x05, b'a']);
    seeds.push(vec![6, 3]);
    seeds
}
