//! The `clawgate` command line.

fn main() {}
