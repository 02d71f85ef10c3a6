//! The sans-I/O forwarding core: no sockets, no threads, no clocks of its own. The shell feeds it
//! parsed packets and the current time and carries out the [`room::Action`]s it returns.

pub mod allocator;
pub mod dynacast;
pub mod keyframe;
pub mod layer_selector;
pub mod line_budget;
pub mod probing;
pub mod rate;
pub mod rewrite;
pub mod room;
pub mod steering;
