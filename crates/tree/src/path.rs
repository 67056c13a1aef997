//! ZooKeeper path validation. (Skeleton.)
