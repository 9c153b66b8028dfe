//! Read-only views of the core in Redis's exact formats: CLUSTER NODES, SLOTS, SHARDS, INFO.
