//! nodes.conf: rendering a node's configuration and parsing it back into a `NodesConf`.
