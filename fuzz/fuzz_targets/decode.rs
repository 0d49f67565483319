//! Frame bodies through the pure decoding path: the decode-cost walk, then prost. Neither may
//! panic, and a body the walk prices within the budget must decode without surprises.
#![no_main]

use iop_profile_server::wire::{decode_cost, frame, ps};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let extra = decode_cost::repeated_cost(body);
    if extra <= 16 * 1024 * 1024 {
        let _ = frame::decode_body::<ps::Message>(body);
    }
});
