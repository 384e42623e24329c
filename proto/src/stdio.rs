//! go-plugin's `plugin.GRPCStdio`: a stream that stays open and carries nothing.
//!
//! A Go plugin forwards writes to its swapped `os.Stdout`/`os.Stderr` here. We log straight to fd 2 in hclog
//! JSON (as the SDK's logger does) and print nothing after the handshake, so there is nothing to forward; the
//! host opens the stream at once and only needs it not to fail.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::proto::plugin::grpc_stdio_server::GrpcStdio;
use crate::proto::plugin::StdioData;
use crate::shutdown::Shutdown;

#[derive(Debug, Clone)]
pub(crate) struct Stdio {
    pub(crate) shutdown: Shutdown,
}

#[tonic::async_trait]
impl GrpcStdio for Stdio {
    type StreamStdioStream = ReceiverStream<Result<StdioData, Status>>;

    async fn stream_stdio(
        &self,
        _request: Request<()>,
    ) -> Result<Response<Self::StreamStdioStream>, Status> {
        let (tx, rx) = mpsc::channel(1);
        let shutdown = self.shutdown.clone();
        // Holding `tx` keeps the stream open; dropping it at shutdown ends it so graceful stop can finish.
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.wait() => {}
                () = tx.closed() => {}
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
