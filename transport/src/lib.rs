//! `slotkv-transport`: the pluggable links between slotkv nodes.
//!
//! It moves length-delimited frames between addresses on separate logical channels and
//! knows no cluster message types.
