// A `DataModule` impl without `#[datamodule]`: its transfer hook would be ignored.
use candle_core::Tensor;
use lightning::{DataLoader, DataModule};

struct Data;

impl DataModule for Data {
    type Batch = (Tensor, Tensor);
    type Loader = DataLoader;
    fn on_before_batch_transfer(&mut self, batch: (Tensor, Tensor), _: usize) -> lightning::Result<(Tensor, Tensor)> {
        Ok(batch)
    }
}

fn main() {}
