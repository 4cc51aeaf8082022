//! Built-in callbacks, written with the same `#[callback]` as users' callbacks.

mod device_stats;
mod early_stopping;
mod ema;
mod grad_accum;
mod lambda;
mod lr_monitor;
mod model_checkpoint;
mod model_checkpoint_state;
mod on_exception_checkpoint;
mod prediction_writer;
mod progress_bar;
mod restored;
mod swa;
mod swa_state;
mod throughput;
mod throughput_monitor;
mod timer;

pub use device_stats::DeviceStatsMonitor;
pub use early_stopping::{EarlyStopping, Mode};
pub use ema::EmaWeights;
pub use grad_accum::GradientAccumulationScheduler;
pub use lambda::LambdaCallback;
pub use lr_monitor::{LearningRateMonitor, LoggingInterval};
pub use model_checkpoint::ModelCheckpoint;
pub use on_exception_checkpoint::OnExceptionCheckpoint;
pub use prediction_writer::{BasePredictionWriter, PredictionWriter, WriteInterval};
pub use progress_bar::ProgressBar;
// Lightning keeps the finders among its callbacks: the same types as `lightning::tuner`'s
pub use crate::tuner::{BatchSizeFinder, LearningRateFinder};
pub use swa::{equal_mean, AvgFn, StochasticWeightAveraging, SwaEpochStart, SwaLrs};
pub use throughput_monitor::ThroughputMonitor;
pub use timer::{TimedStage, Timer};
