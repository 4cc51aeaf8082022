// A misspelled hook in a `#[datamodule]` impl is an error with a "did you mean", as on a module.
use candle_core::Tensor;
use lightning::prelude::*;

struct Data;

#[datamodule]
impl DataModule for Data {
    type Batch = (Tensor, Tensor);
    type Loader = DataLoader;
    fn train_dataloder(&mut self) -> lightning::Result<DataLoader> {
        unimplemented!()
    }
}

fn main() {}
