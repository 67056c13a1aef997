//! The network of a standalone keeper: none. Must not: be used by an ensemble member.

use super::*;

/// The network of a group without peers. openraft asks for a connection only to replicate to or
/// request votes from another member, which a one-voter group has none of; should it happen
/// anyway, every RPC reports the peer unreachable and openraft backs off.
pub struct NoNetwork;

/// A "connection" to a peer that cannot be reached.
pub struct NoPeer {
    pub(super) target: NodeId,
}

impl NoPeer {
    pub(super) fn unreachable<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        let reason = AnyError::error(format!(
            "no network to node {}: this is a standalone group",
            self.target
        ));
        RPCError::Unreachable(Unreachable::from(reason))
    }
}

impl RaftNetworkFactory<TypeConfig> for NoNetwork {
    type Network = NoPeer;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> NoPeer {
        NoPeer { target }
    }
}

impl RaftNetwork<TypeConfig> for NoPeer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }
}
