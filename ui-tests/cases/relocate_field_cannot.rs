// `#[derive(Relocate)]` on a layer with a field the trainer cannot move.
use lightning::nn::Linear;
use lightning::prelude::*;

struct Lookup;

#[derive(Relocate)]
struct Layer {
    fc: Linear,
    width: usize,
    table: Lookup,
}

fn main() {}
