//! What the benchmarks share with their tests: the boot-storm rig (a
//! network-namespace segment with blades running their rendered boot
//! services, and the DHCP and HTTP storms fired at them). The benchmarks
//! themselves are the `bench` binary's modules.

pub mod dhcp_storm;
pub mod http_storm;
pub mod lab;
pub mod storm_setup;
