// The element an invocation owns on a 2-D grid of workgroups of WG
// invocations (the includer's `override WG`), so n may exceed 65535 * WG.
// Callers guard against the tail the grid's rounding adds.

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}
