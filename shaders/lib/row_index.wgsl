// The row a workgroup owns on a 2-D grid of one workgroup per row (rows may
// exceed the 65535 groups of one dimension). Callers guard against the few
// extra groups the grid's rounding adds.

fn row_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}
