// `#[derive(Relocate)]` takes a struct of layers; an enum of layers writes `Relocate` itself.
use lightning::nn::Linear;
use lightning::prelude::*;

#[derive(Relocate)]
enum Head {
    Small(Linear),
    Large(Linear),
}

fn main() {}
