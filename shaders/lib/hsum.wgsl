// The sum of a vec4's lanes in one fixed order (pairs first), so every
// kernel that folds a vec4 into a scalar rounds the same way.

fn hsum(a: vec4<f32>) -> f32 {
    return (a.x + a.y) + (a.z + a.w);
}
