//! The keeper's periodic tasks, each a loop over the shared state that proposes entries on
//! the leader: [`expiry`] (sessions past their deadline, as [`crate::session`] decides) and
//! [`containers`] (empty containers and expired TTL nodes); and [`liveness`], the session
//! reports that carry followers' client touches to the leader. Must not: change the tree but
//! through consensus.

pub(crate) mod containers;
pub(crate) mod expiry;
pub(crate) mod liveness;
