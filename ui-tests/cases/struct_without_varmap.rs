use lightning::prelude::*;

#[lightning_module]
struct NoParams {
    hidden: usize,
}

fn main() {}
