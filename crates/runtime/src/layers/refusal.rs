//! An answer a layer gives without calling the service below it: the
//! shedding layer's RESOURCE_EXHAUSTED, the deadline layer's
//! DEADLINE_EXCEEDED. tonic answers an error as a trailers-only response,
//! so the status goes in the response head and the body is empty.

use std::task::Poll;

use tonic::Status;

/// A ready refusal, handed out once.
#[derive(Debug)]
pub struct Refusal<RB>(Option<http::Response<RB>>);

impl<RB: Default> Refusal<RB> {
    /// A refusal with `status`.
    pub fn new(status: Status) -> Self {
        Self(Some(status.into_http()))
    }
}

impl<RB> Refusal<RB> {
    /// The response, the first time; polled again after that, never ready.
    pub fn poll_take<E>(&mut self) -> Poll<Result<http::Response<RB>, E>> {
        self.0
            .take()
            .map_or(Poll::Pending, |response| Poll::Ready(Ok(response)))
    }
}
