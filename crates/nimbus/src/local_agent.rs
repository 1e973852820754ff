//! The in-process agent as a controller transport (`nimbus serve` without `--no-agent`):
//! requests are direct calls, files are opened on this machine.

use async_trait::async_trait;
use futures::StreamExt;
use nimbus_agent::Agent;
use nimbus_control::agents::{AgentTransport, FileStream};
use nimbus_model::Result;
use nimbus_model::agent::{AgentReply, AgentRequest};

pub struct LocalAgent(pub Agent);

#[async_trait]
impl AgentTransport for LocalAgent {
    async fn call(&self, request: AgentRequest) -> Result<AgentReply> {
        self.0.handle(request).await
    }

    async fn open_file(&self, location: &str) -> Result<FileStream> {
        let file = self.0.open_file(location).await?;
        Ok(tokio_util::io::ReaderStream::new(file).boxed())
    }
}
