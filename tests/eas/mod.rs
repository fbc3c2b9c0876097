//! The simulated phone of the integration tests: speaks EAS over real HTTP to a gateway started
//! in this process, with either query form and any protocol version.
//!
//! Both live in the test bed (`eas_testbed::Phone`, `eas_testbed::Gateway`, testbed/src/phone.rs
//! and gateway.rs), shared with the load benchmarks; this module names them for the tests
//! (`mod eas;` then `use eas::{Gateway, Phone, …}`).

// Each test binary uses a different part.
#![allow(unused_imports)]

pub use eas_testbed::{
    Answer, Folder, Gateway, Phone, QueryForm, find_text, folder_changes, policy_key, sync_to_end,
};
